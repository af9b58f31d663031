"""ppxgb: privacy-preserving XGBoost.

The core package holds what every role shares: fixed-point encoding, additive secret
sharing, the CART ensemble model with its XGBoost JSON round trip, the transports and
the command line. The roles live in ppxgb.training, ppxgb.inference and ppxgb.proxy.
"""

__version__ = "0.1.0"
