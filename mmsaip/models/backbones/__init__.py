from .saip_vit import AttentionMaps, SAIPViT, SAIPViTOutput
from .saip_vit_backbone import SAIPViTBackbone

__all__ = ['AttentionMaps', 'SAIPViT', 'SAIPViTOutput', 'SAIPViTBackbone']
