from .saip_vit import AttentionMaps, SAIPViT, SAIPViTOutput

__all__ = ['AttentionMaps', 'SAIPViT', 'SAIPViTOutput']
