"""sr25519 (schnorrkel) signatures with a caller-chosen signing context.

Reward signatures use the context ``b"subspace_reward"``; the maintained ``sr25519`` binding on
PyPI signs only under ``b"substrate"``, so signing/verification is implemented here (pure Python,
cross-checked both ways against that binding under the ``substrate`` context in the tests).
"""

from services.protocol.sr25519.schnorrkel import public_key_from_secret, sign, verify

__all__ = ["public_key_from_secret", "sign", "verify"]
