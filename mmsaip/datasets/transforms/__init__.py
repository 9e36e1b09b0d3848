from .load_person_image import ImageDecodeError, LoadPersonImage
from .pack_saip_inputs import PackSAIPInputs
from .saip_multi_view import SAIPMultiView

__all__ = [
    'ImageDecodeError', 'LoadPersonImage', 'PackSAIPInputs', 'SAIPMultiView'
]
