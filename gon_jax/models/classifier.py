"""The classifier head of the GON classifier (Eq. 13), around any GON decoder."""

import flax.linen as nn
import jax

class LatentClassifier(nn.Module):
  """A GON decoder with a linear softmax classifier on its latents (Eq. 13).

  Called like `decoder`; `classify(latents)` returns logits `[batch, num_classes]`.
  """
  decoder: nn.Module
  num_classes: int

  def setup(self):
    # Zero logits at first (as big_vision zero-initialises heads): latents summed
    # over pixels are large, and a random head would swamp the decoder with
    # cross-entropy gradients before it learns to reconstruct.
    self.head = nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros)

  def __call__(self, z: jax.Array, use_running_average: bool, **kwargs):
    return self.decoder(z, use_running_average, **kwargs)

  def classify(self, latents: jax.Array) -> jax.Array:
    return self.head(latents)
