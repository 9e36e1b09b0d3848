from .csm_projector import CSMProjector
from .vit_feature_pyramid import ViTFeaturePyramid

__all__ = ['CSMProjector', 'ViTFeaturePyramid']
