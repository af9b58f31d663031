"""ppxgb: privacy-preserving XGBoost.

The core package holds what every role shares: the crypto layer (ppxgb.crypto), the
CART ensemble model with its XGBoost JSON round trip, objectives, the split rule, the
transports and the wire formats.  The roles live in ppxgb.training, ppxgb.inference and
ppxgb.proxy; the command line, the demo and the deployment helpers in ppxgb.app.
"""

__version__ = "0.1.0"
