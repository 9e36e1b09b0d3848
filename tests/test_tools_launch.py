"""The launch scripts pick a free port or refuse a taken one."""
import os
import os.path as osp
import socket
import subprocess
import sys

from saip_test_utils import REPO_ROOT

CHECK_PORT = osp.join(REPO_ROOT, 'tools', 'misc', 'check_port.py')


def run(command, env=None):
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=env)


def test_check_port_picks_free_port():
    result = run([sys.executable, CHECK_PORT, '127.0.0.1'])
    assert result.returncode == 0, result.stderr
    port = int(result.stdout)
    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', port))


def test_dist_train_rejects_taken_port(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        env = dict(os.environ, PORT=str(port), PYTHON=sys.executable)
        result = run([
            'bash',
            osp.join(REPO_ROOT, 'tools', 'dist_train.sh'),
            osp.join(REPO_ROOT, 'configs', 'saip',
                     'saip_vit-tiny_1xb8-40it_demo.py'), '2'
        ], env)
    assert result.returncode == 1
    assert f'port {port} is already in use' in result.stderr
    # It fails before any training process starts, so nothing listens.
    assert 'torch.distributed' not in result.stderr


def test_check_port_needs_port_for_several_nodes():
    result = run([sys.executable, CHECK_PORT, 'localhost', '--nnodes', '2'])
    assert result.returncode == 2
    assert 'PORT must be set' in result.stderr
