"""tools/dataset_converters/make_person_list.py on copies of real crops and
unreadable files."""
import os.path as osp
import shutil

import pytest

from mmsaip.datasets import PersonImageDataset

BAD_FILES = ('broken/truncated.jpg', 'empty.jpg', 'notes.JPG')


@pytest.fixture(scope='module')
def tool(load_tool):
    return load_tool('dataset_converters/make_person_list.py')


@pytest.fixture
def person_folder(tmp_path, person_crop_paths):
    """Six real crops in two sub-folders, plus a truncated JPEG, an empty
    file, a text file named .JPG and a file that is not an image type."""
    root = tmp_path / 'lup'
    good = []
    for index, path in enumerate(person_crop_paths):
        relative = f'{"ab"[index % 2]}/{osp.basename(path)}'
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / relative)
        good.append(relative)
    data = open(person_crop_paths[0], 'rb').read()
    (root / 'broken').mkdir()
    (root / BAD_FILES[0]).write_bytes(data[:len(data) // 2])
    (root / BAD_FILES[1]).write_bytes(b'')
    (root / BAD_FILES[2]).write_text('not an image\n')
    (root / 'readme.txt').write_text('LUPerson subset\n')
    return root, sorted(good)


def read_lines(path):
    with open(path, encoding='utf-8') as f:
        return f.read().splitlines()


def test_list_keeps_readable_files(tool, person_folder, tmp_path, capsys):
    root, good = person_folder
    out = tmp_path / 'lists' / 'all.txt'
    bad_list = tmp_path / 'bad.tsv'
    assert tool.main(
        [str(root),
         str(out), '--workers', '2', '--bad-list',
         str(bad_list)]) == 0
    assert read_lines(out) == good

    bad = dict(line.split('\t') for line in read_lines(bad_list))
    assert sorted(bad) == sorted(BAD_FILES)
    assert 'truncated' in bad['broken/truncated.jpg']
    assert bad['empty.jpg'] == 'the file is empty (0 bytes)'
    assert bad['notes.JPG'] == 'not a known image format'
    summary = capsys.readouterr().out
    assert 'Found 9 image files' in summary
    assert f'Wrote {len(good)} paths' in summary
    assert 'Left out 3 unreadable files' in summary
    for path in BAD_FILES:
        assert path in summary

    # The dataset reads the list and every listed image loads.
    dataset = PersonImageDataset(
        data_root=str(root),
        ann_file=str(out),
        pipeline=[dict(type='LoadPersonImage')])
    assert len(dataset) == len(good)
    for index in range(len(dataset)):
        assert dataset[index]['img'].shape[2] == 3


def test_list_one_worker_matches(tool, person_folder, tmp_path):
    root, good = person_folder
    out = tmp_path / 'one.txt'
    tool.main([str(root), str(out), '--workers', '1'])
    assert read_lines(out) == good


def test_list_subset_is_reproducible(tool, person_folder, tmp_path):
    root, good = person_folder
    lists = {}
    for name, seed in (('a', 5), ('b', 5), ('c', 6)):
        out = tmp_path / f'{name}.txt'
        tool.main([
            str(root),
            str(out), '--subset', '4', '--seed',
            str(seed), '--workers', '2'
        ])
        lists[name] = read_lines(out)
    assert lists['a'] == lists['b']
    assert lists['a'] != lists['c']
    for paths in lists.values():
        # Four readable images, sorted. Unreadable draws were replaced.
        assert len(paths) == 4
        assert paths == sorted(paths)
        assert set(paths) <= set(good)


def test_list_subset_larger_than_readable(tool, person_folder, tmp_path,
                                          capsys):
    root, good = person_folder
    out = tmp_path / 'big.txt'
    tool.main([str(root), str(out), '--subset', '8', '--workers', '2'])
    assert read_lines(out) == good
    assert 'asked for more images than the 6 readable' in \
        capsys.readouterr().out


def test_list_no_check_keeps_everything(tool, person_folder, tmp_path):
    root, good = person_folder
    out = tmp_path / 'unchecked.txt'
    tool.main([str(root), str(out), '--no-check'])
    assert read_lines(out) == sorted([*good, *BAD_FILES])


def test_list_missing_root(tool, tmp_path):
    with pytest.raises(FileNotFoundError, match='not an existing folder'):
        tool.main([str(tmp_path / 'nowhere'), str(tmp_path / 'out.txt')])


def test_list_folder_without_images(tool, tmp_path):
    (tmp_path / 'notes.txt').write_text('no images here\n')
    with pytest.raises(FileNotFoundError, match='No images'):
        tool.main([str(tmp_path), str(tmp_path / 'out.txt')])
