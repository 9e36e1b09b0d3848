"""Pick or check the rendezvous port of a distributed launch.

Prints the port to use. With no port given, it requests a free one from the
operating system. With a port given, the master node (node rank 0) checks
that it can bind it and fails at once if not, instead of letting the
launch hang. Other nodes print the given port unchecked.
"""
import argparse
import errno
import socket
import sys


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('master_addr', help='address of the master node')
    parser.add_argument(
        'port', nargs='?', default='', help='requested port; empty to pick')
    parser.add_argument('--nnodes', type=int, default=1)
    parser.add_argument('--node-rank', type=int, default=0)
    return parser.parse_args()


def bind_address(master_addr: str) -> str:
    """Return the local address to test: the master's, if it is local."""
    if master_addr in ('localhost', '127.0.0.1', '::1'):
        return master_addr
    # Binding to all interfaces covers the master address on this host.
    return ''


def main() -> int:
    args = parse_args()
    if args.port and args.node_rank != 0:
        print(args.port)
        return 0
    if not args.port:
        if args.nnodes > 1:
            sys.stderr.write('error: PORT must be set for a launch on '
                             'several nodes, so that every node uses the '
                             'same one.\n')
            return 2
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((bind_address(args.master_addr), 0))
            print(sock.getsockname()[1])
        return 0

    try:
        port = int(args.port)
    except ValueError:
        sys.stderr.write(f'error: PORT must be a number, got {args.port!r}\n')
        return 2
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((bind_address(args.master_addr), port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                sys.stderr.write(
                    f'error: port {port} is already in use on this machine. '
                    'Set PORT to a free port, or leave it unset to pick '
                    'one.\n')
                return 1
            raise
    print(port)
    return 0


if __name__ == '__main__':
    sys.exit(main())
