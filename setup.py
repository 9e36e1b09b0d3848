import os.path as osp

from setuptools import find_packages, setup


def read_version() -> str:
    """Read ``__version__`` from mmsaip/version.py without importing it."""
    namespace: dict = {}
    version_file = osp.join(osp.dirname(__file__), 'mmsaip', 'version.py')
    with open(version_file, encoding='utf-8') as f:
        exec(compile(f.read(), version_file, 'exec'), namespace)
    return namespace['__version__']


def read_requirements(path: str) -> list:
    """Return the requirement lines of a requirements file."""
    with open(path, encoding='utf-8') as f:
        lines = (line.split('#', 1)[0].strip() for line in f)
        return [line for line in lines if line]


setup(
    name='mmsaip',
    version=read_version(),
    description='SAIP: scale-aware image pretraining for human-centric '
    'perception, as an OpenMMLab (mmpretrain) plugin',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    keywords='self-supervised learning, human-centric perception, ViT',
    packages=find_packages(exclude=('configs', 'tools', 'tests')),
    python_requires='>=3.9,<3.13',
    install_requires=read_requirements('requirements/runtime.txt'),
    extras_require={'tests': read_requirements('requirements/tests.txt')},
    classifiers=[
        'License :: OSI Approved :: Apache Software License',
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3.11',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    license='Apache License 2.0',
    zip_safe=False)
