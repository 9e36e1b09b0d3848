from .csm_head import CSMHead
from .csr_head import CSRHead
from .css_head import CSSHead

__all__ = ['CSMHead', 'CSRHead', 'CSSHead']
