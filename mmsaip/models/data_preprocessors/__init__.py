from .saip_data_preprocessor import SAIPDataPreprocessor

__all__ = ['SAIPDataPreprocessor']
