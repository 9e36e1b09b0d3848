"""tools/analysis/plot_losses.py on a real and on hand-made logs."""
import json

import cv2
import pytest

LOSS_KEYS = ('loss_csm', 'loss_csm_attn', 'loss_csr', 'loss_css_inst',
             'loss_css_roi')


@pytest.fixture(scope='module')
def tool(load_tool):
    return load_tool('analysis/plot_losses.py')


def write_lines(path, lines):
    path.write_text(''.join(f'{line}\n' for line in lines), encoding='utf-8')
    return str(path)


def test_plot_real_log(tool, tiny_run, tmp_path):
    out = tmp_path / 'plots' / 'losses.png'
    assert tool.main([tiny_run.scalars, '--out', str(out)]) == 0
    image = cv2.imread(str(out))
    # Five axes (losses, temperature, momentum, entropy, IoUs) at 100 dpi:
    # 9 x (2.2 * 5 + 1) inches.
    assert image.shape == (1200, 900, 3)
    assert image.std() > 10.


def test_plot_lists_plotted_keys(tool, tmp_path):
    records = [
        dict(
            iter=i,
            step=i,
            loss_csm=11. - i,
            loss_csm_attn=0.01 * i,
            loss_csr=1.2,
            loss_css_inst=0.7,
            loss_css_roi=0.69,
            csm_teacher_temp=0.04,
            ema_momentum=0.004 / i) for i in range(1, 6)
    ]
    # A validation-style record without an iteration is ignored.
    lines = [json.dumps(record) for record in records]
    lines.insert(2, json.dumps(dict(loss_csm=99.)))
    lines.insert(3, '')
    path = write_lines(tmp_path / 'scalars.json', lines)
    records = tool.read_scalars(path)
    assert len(records) == 6
    series = tool.collect_series(records, ['loss_csm'])
    assert series['loss_csm'] == ([1., 2., 3., 4., 5.], [10., 9., 8., 7., 6.])

    out = str(tmp_path / 'losses.png')
    plotted = tool.plot_losses(records, out)
    assert plotted == [*LOSS_KEYS, 'csm_teacher_temp', 'ema_momentum']
    # Three axes: 9 x (2.2 * 3 + 1) inches at 100 dpi.
    assert cv2.imread(out).shape == (760, 900, 3)


def test_plot_step_without_iter(tool, tmp_path):
    path = write_lines(tmp_path / 'scalars.json', [
        json.dumps(dict(step=s, loss_csr=1. / s, ema_momentum=0.004))
        for s in (1, 2, 3)
    ])
    series = tool.collect_series(tool.read_scalars(path), ['loss_csr'])
    assert series['loss_csr'][0] == [1., 2., 3.]
    out = str(tmp_path / 'out.png')
    plotted = tool.plot_losses(tool.read_scalars(path), out)
    assert plotted == ['loss_csr', 'ema_momentum']
    # Only the loss and momentum axes: 9 x (2.2 * 2 + 1) inches.
    assert cv2.imread(out).shape == (540, 900, 3)


def test_plot_missing_file(tool, tmp_path):
    missing = str(tmp_path / 'nothing.json')
    with pytest.raises(FileNotFoundError, match='nothing.json'):
        tool.main([missing, '--out', str(tmp_path / 'out.png')])


def test_plot_file_without_saip_keys(tool, tmp_path):
    path = write_lines(tmp_path / 'scalars.json', [
        json.dumps(dict(iter=1, step=1, loss=2.3, lr=0.1)),
        json.dumps(dict(iter=2, step=2, loss=2.1, lr=0.1)),
    ])
    with pytest.raises(ValueError, match='Keys found: iter, loss, lr, step'):
        tool.main([path, '--out', str(tmp_path / 'out.png')])
    assert not (tmp_path / 'out.png').exists()


def test_plot_invalid_json_line(tool, tmp_path):
    path = write_lines(tmp_path / 'scalars.json',
                       [json.dumps(dict(iter=1, loss_csr=1.)), '{"iter": 2,'])
    with pytest.raises(ValueError, match='line 2 is not valid JSON'):
        tool.main([path, '--out', str(tmp_path / 'out.png')])
