"""Panels of the inputs and predictions of a SAIP model.

:func:`run_saip_visual_pass` runs a model on one batch and keeps the views,
masks and head outputs. :func:`draw_saip_panels` turns one sample of it
into RGB images. ``tools/analysis/visualize_saip.py`` and
:class:`mmsaip.engine.hooks.SAIPVisualizationHook` share them.
"""
from .saip_panels import (PANEL_NAMES, draw_attention_panel, draw_csr_panel,
                          draw_css_panel, draw_saip_panels, draw_views_panel)
from .saip_visual_pass import (BRANCHES, SAIPVisualOutputs,
                               run_saip_visual_pass)

__all__ = [
    'PANEL_NAMES', 'BRANCHES', 'SAIPVisualOutputs', 'run_saip_visual_pass',
    'draw_saip_panels', 'draw_views_panel', 'draw_css_panel', 'draw_csr_panel',
    'draw_attention_panel'
]
