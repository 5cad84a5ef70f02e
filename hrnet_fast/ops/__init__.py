from .fused_exchange import fused_exchange, fused_exchange_reference  # noqa: F401
