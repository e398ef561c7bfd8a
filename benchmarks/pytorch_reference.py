"""The official recipes in eager PyTorch: the yardstick of bench.py and time_to_quality.py.

The same computation as the official scripts (cwkx/GON), written with torch.nn
from a gon_jax config's sizes, so both sides train the same network:

* conv: GON.py. A DCGAN-style decoder of ConvTranspose2d layers (latent 32,
  ngf 16, 32x32 for conv_mnist), BatchNorm2d (`model.norm='batch'`, the
  official choice: batch statistics in both passes) or GroupNorm with one
  group (`'layer'`, conv_mnist's), ELU, a sigmoid; PyTorch's default init.
* siren: Implicit-GON.py. A SIREN (w0 30, the official init) over
  concat(coordinates in [-1, 1], latent).
* ae: the autoencoder baseline, conv's decoder after a mirrored encoder of
  Conv2d layers (stride 2, doubling the width, the same norm and ELU, then a
  4x4 valid convolution to the latent), as gon_jax's `ae` model.
* vgon: Variational-GON.py. Two Linear layers (fc21, fc22) map the latent to
  a Gaussian's mean and log-variance, a reparameterised sample of which
  conv's decoder turns into Bernoulli probabilities (or Gaussian means); the
  loss is the negative ELBO (KL weight `model.kl_weight`) in both passes,
  each drawing its own noise. vae: the same after ae's encoder.

The latent is minus the gradient at zeros of the inner loss, computed with
`torch.autograd.grad(create_graph=True)`; the inner loss is each example's
summed squared error times `gon_jax.losses.inner_loss_scale` (the official
scripts: 'official'); the outer loss is the same expression; Adam.

  python benchmarks/pytorch_reference.py --model conv [--norm layer] [--device cuda]
  python benchmarks/pytorch_reference.py --model siren --steps 10
  python benchmarks/pytorch_reference.py --model vgon   # or vae; their configs' layer norm

prints one JSON line: steps per second after warm-up, at batch 64 on random
images. time_to_quality.py's `--pytorch` trains a `Recipe` on real data.
torch is needed only here: gon_jax does not depend on it.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gon_jax import losses, models  # pylint: disable=wrong-import-position


RECIPES = ('conv', 'ae', 'vgon', 'vae')  # the models on conv's decoder
NORMS = {'batch': nn.BatchNorm2d, 'layer': lambda c: nn.GroupNorm(1, c),
         'group': lambda c: nn.GroupNorm(8, c), 'none': lambda c: nn.Identity()}


def conv_encoder(latent_dim: int, features: int, channels: int, norm: str) -> nn.Module:
  layers, widths = [], [channels, features, 2 * features, 4 * features]
  for c_in, c_out in zip(widths[:-1], widths[1:]):
    layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), NORMS[norm](c_out), nn.ELU()]
  return nn.Sequential(*layers, nn.Conv2d(4 * features, latent_dim, 4, 1, 0), nn.Flatten())


def conv_decoder(latent_dim: int, features: int, channels: int, norm: str) -> nn.Module:
  layers, widths = [], [latent_dim, 4 * features, 2 * features, features]
  for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
    layers += [nn.ConvTranspose2d(c_in, c_out, 4, 1 if i == 0 else 2, 0 if i == 0 else 1),
               NORMS[norm](c_out), nn.ELU()]
  layers += [nn.ConvTranspose2d(features, channels, 4, 2, 1), nn.Sigmoid()]
  return nn.Sequential(*layers)


class Sine(nn.Module):

  def __init__(self, w0: float):
    super().__init__()
    self.w0 = w0

  def forward(self, x):
    return torch.sin(self.w0 * x)


def siren(in_features: int, widths: tuple, channels: int, w0: float) -> nn.Module:
  """Implicit-GON.py's SIREN: weights U(+-1/fan_in) first, U(+-sqrt(6/fan_in)/w0) after."""
  layers, fan_in = [], in_features
  for width in widths:
    layers.append(nn.Linear(fan_in, width))
    bound = 1 / fan_in if not layers[:-1] else np.sqrt(6 / fan_in) / w0
    with torch.no_grad():
      layers[-1].weight.uniform_(-bound, bound)
    layers.append(Sine(w0))
    fan_in = width
  last = nn.Linear(fan_in, channels)
  with torch.no_grad():
    last.weight.uniform_(-np.sqrt(6 / fan_in) / w0, np.sqrt(6 / fan_in) / w0)
  return nn.Sequential(*layers, last)


class Recipe:
  """An official recipe (GON.py or Implicit-GON.py) sized by a gon_jax config.

  Images are numpy float32 [batch, height, width, channels] in [0, 1], as
  gon_jax's data pipeline gives them.
  """

  def __init__(self, config, device: str = 'cpu'):
    m, self.device = config.model, torch.device(device)
    torch.manual_seed(config.seed)
    spec = models.get_spec(m.name)
    self.latent_dim, self.implicit = m.latent_dim, spec.implicit
    size = config.data.image_size
    self.image_shape = (size, size, m.channels)
    if self.implicit:
      self.decoder = siren(2 + m.latent_dim, tuple(m.widths), m.channels, m.w0)
      side = torch.linspace(-1, 1, size)
      self.coordinates = torch.stack(torch.meshgrid(side, side, indexing='ij'), -1).reshape(-1, 2)
    elif m.name in RECIPES:
      self.decoder = conv_decoder(m.latent_dim, m.features, m.channels, m.norm)
    else:
      raise ValueError(f'no PyTorch recipe for model {m.name!r}; use one of '
                       f'{", ".join(("siren",) + RECIPES)}')
    self.variational = spec.variational
    # Variational-GON.py's fc21 and fc22: the stochastic layer's mean and log-variance.
    self.mu, self.logvar = ((nn.Linear(m.latent_dim, m.latent_dim).to(self.device),
                             nn.Linear(m.latent_dim, m.latent_dim).to(self.device))
                            if self.variational else (None, None))
    self.encoder = (conv_encoder(m.latent_dim, m.features, m.channels, m.norm).to(self.device)
                    if m.name in ('ae', 'vae') else None)
    self.decoder.to(self.device)
    self.coordinates = self.coordinates.to(self.device) if self.implicit else None
    self.scale = losses.inner_loss_scale(config.gon.inner_reduction, config.batch_size,
                                         size * size, spec.official_average(config))
    self.likelihood = (m.likelihood, m.gaussian_sigma, m.kl_weight) if self.variational else None
    self.elbo_samples = config.elbo_samples
    self.optimiser = torch.optim.Adam(self.modules().parameters(), lr=config.learning_rate)
    self.batch_size = config.batch_size

  def modules(self) -> nn.ModuleList:
    """Every trained module (decoder, stochastic layer, encoder)."""
    return nn.ModuleList([x for x in (self.decoder, self.mu, self.logvar, self.encoder)
                          if x is not None])

  def decode(self, z: torch.Tensor, noise: torch.Tensor | None = None):
    """Images [batch, height * width * channels] (flattened) of latents [batch, latent_dim];
    variational: (images, mu, logvar), the code mu + exp(logvar / 2) * noise (None: mu)."""
    if self.variational:
      mu, logvar = self.mu(z), self.logvar(z)
      code = mu if noise is None else mu + torch.exp(0.5 * logvar) * noise
      return self._decode_code(code), mu, logvar
    return self._decode_code(z)

  def _decode_code(self, z: torch.Tensor) -> torch.Tensor:
    if self.implicit:
      n, p = z.shape[0], self.coordinates.shape[0]
      inputs = torch.cat([self.coordinates.expand(n, -1, -1), z[:, None, :].expand(-1, p, -1)], -1)
      return self.decoder(inputs).reshape(n, -1)
    return self.decoder(z[:, :, None, None]).permute(0, 2, 3, 1).reshape(z.shape[0], -1)

  def per_example_loss(self, outputs, images: torch.Tensor) -> torch.Tensor:
    """Each example's summed squared error, or its negative ELBO in nats: [batch]."""
    if not self.variational:
      return ((outputs - images) ** 2).sum(1)
    (decoded, mu, logvar), (likelihood, sigma, kl_weight) = outputs, self.likelihood
    if likelihood == 'bernoulli':  # logs clamped at -100, as in gon_jax
      nll = nn.functional.binary_cross_entropy(decoded, images, reduction='none').sum(1)
    else:
      nll = (((decoded - images) ** 2).sum(1) / (2 * sigma ** 2)
             + 0.5 * np.log(2 * np.pi * sigma ** 2) * images.shape[1])
    return nll - kl_weight * 0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)

  def loss(self, z: torch.Tensor, images: torch.Tensor,
           noise: torch.Tensor | None = None) -> torch.Tensor:
    return self.scale * self.per_example_loss(self.decode(z, noise), images).sum()

  def noise(self, images: torch.Tensor) -> torch.Tensor | None:
    """A draw of the stochastic layer's noise for a pass over `images`; None if it has none."""
    if not self.variational:
      return None
    return torch.randn(images.shape[0], self.latent_dim, device=self.device)

  def latents(self, images: torch.Tensor, create_graph: bool,
              noise: torch.Tensor | None = None) -> torch.Tensor:
    """The GON's latents (minus the gradient at the origin, the inner pass decoding with
    `noise`), or the autoencoder's encodings."""
    if self.encoder is not None:
      return self.encoder(images.reshape(-1, *self.image_shape).permute(0, 3, 1, 2))
    origin = torch.zeros(images.shape[0], self.latent_dim, device=self.device, requires_grad=True)
    return -torch.autograd.grad(self.loss(origin, images, noise), [origin],
                                create_graph=create_graph)[0]

  def as_tensor(self, images: np.ndarray) -> torch.Tensor:
    return torch.tensor(images.reshape(len(images), -1), device=self.device)  # copies

  def step(self, images: np.ndarray) -> float:
    """One training step on a batch; returns the outer loss."""
    self.modules().train()
    x = self.as_tensor(images)
    loss = self.loss(self.latents(x, True, self.noise(x)), x, self.noise(x))
    self.optimiser.zero_grad()
    loss.backward()
    self.optimiser.step()
    return loss

  def flax_params(self, gradients: bool = False) -> dict:
    """The parameters as gon_jax's tree (numpy), so that both can start from the same
    point; or, with `gradients`, their gradients (after a backward pass), to compare.

    Conv: a transposed convolution's weight [in, out, 4, 4] is UpConv's kernel [4, 4, in,
    out]; a norm's weight and bias its scale and bias. SIREN: a Linear's weight [out, in]
    is a kernel [in, out] (the first one SirenDecoder's `first_kernel`). The autoencoder's
    encoder: under 'ConvEncoder_0', a Conv2d's weight [out, in, 4, 4] is a Conv kernel
    [4, 4, in, out]. Variational: the conv tree under 'decoder', the encoder's under
    'encoder', the Linear layers fc21 and fc22 as Dense 'mu' and 'logvar'."""
    value = (lambda p: p.grad.cpu().numpy()) if gradients else (lambda p: p.detach().cpu().numpy())
    dense = lambda m: {'kernel': value(m.weight).T.copy(), 'bias': value(m.bias)}
    if self.implicit:
      linear = [m for m in self.decoder if isinstance(m, nn.Linear)]
      first = dense(linear[0])
      params = {'first_kernel': first['kernel'], 'first_bias': first['bias']}
      params.update({f'Dense_{i}': dense(m) for i, m in enumerate(linear[1:])})
      return params
    params = _conv_params(self.decoder, nn.ConvTranspose2d, 'UpConv', (2, 3, 0, 1), value)
    encoder = (_conv_params(self.encoder, nn.Conv2d, 'Conv', (2, 3, 1, 0), value)
               if self.encoder is not None else None)
    if not self.variational:
      return params if encoder is None else {**params, 'ConvEncoder_0': encoder}
    params = {'decoder': params, 'mu': dense(self.mu), 'logvar': dense(self.logvar)}
    return params if encoder is None else {**params, 'encoder': encoder}

  def reconstruct(self, images: np.ndarray) -> np.ndarray:
    """Reconstructions in [0, 1], shaped like `images`, in batches of the training batch size.

    BatchNorm normalises with the batch's statistics, as GON.py does throughout (it
    never switches to eval mode; its running averages mix the inner pass's zero
    variance with the outer pass's and reconstruct badly); without BatchNorm the modes
    do not differ."""
    self.modules().train()
    out, batch_size = [], self.batch_size
    for start in range(0, len(images), batch_size):
      x = self.as_tensor(images[start:start + batch_size])
      decoded = self.decode(self.latents(x, create_graph=False))
      decoded = decoded[0] if self.variational else decoded  # the posterior mean's, as gon_jax's
      out.append(decoded.detach().clamp(0, 1).cpu())
    return torch.cat(out).numpy().reshape(images.shape)

  def negative_elbo(self, images: np.ndarray) -> np.ndarray:
    """Each image's negative ELBO in nats [n], as gon_jax evaluates it: the mean over
    `elbo_samples` draws, each with its own noise for the inner and the outer pass."""
    self.modules().train()
    out = []
    for start in range(0, len(images), self.batch_size):
      x = self.as_tensor(images[start:start + self.batch_size])
      samples = [self.per_example_loss(
          self.decode(self.latents(x, False, self.noise(x)), self.noise(x)), x).detach()
                 for _ in range(self.elbo_samples)]
      out.append(torch.stack(samples).mean(0).cpu())
    return torch.cat(out).numpy()


def _conv_params(network: nn.Sequential, conv_type: type, conv_name: str,
                 kernel_axes: tuple[int, ...], value) -> dict:
  """Flax parameters of a Sequential's convolutions (weights transposed by `kernel_axes`) and
  norms (weight and bias as scale and bias), numbered in order as Flax names them; `value`
  maps a torch parameter to numpy (its value or its gradient)."""
  params = {}
  convs = [m for m in network if isinstance(m, conv_type)]
  norms = [m for m in network if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d))]
  for i, m in enumerate(convs):
    params[f'{conv_name}_{i}'] = {'kernel': value(m.weight).transpose(kernel_axes),
                                  'bias': value(m.bias)}
  for i, m in enumerate(norms):
    name = 'BatchNorm' if isinstance(m, nn.BatchNorm2d) else 'GroupNorm'
    params[f'{name}_{i}'] = {'scale': value(m.weight), 'bias': value(m.bias)}
  return params


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
  parser.add_argument('--model', choices=('conv', 'siren', 'vgon', 'vae'), default='conv')
  parser.add_argument('--norm', choices=tuple(NORMS), default=None,
                      help="conv: default 'batch' (GON.py's); vgon, vae: their config's")
  parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
  parser.add_argument('--batch_size', type=int, default=64)
  parser.add_argument('--steps', type=int, default=50)
  parser.add_argument('--warmup', type=int, default=5)
  args = parser.parse_args()
  from gon_jax.configs import conv_mnist, siren_mnist, vae_mnist, vgon_mnist  # pylint: disable=import-outside-toplevel
  config = {'conv': conv_mnist, 'siren': siren_mnist, 'vgon': vgon_mnist,
            'vae': vae_mnist}[args.model].get_config()
  config.batch_size = args.batch_size
  if args.model != 'siren':  # the SIREN has no normalisation
    config.model.norm = args.norm or ('batch' if args.model == 'conv' else config.model.norm)
  config.gon.inner_reduction = 'official'
  recipe = Recipe(config, args.device)
  size = config.data.image_size
  images = np.random.default_rng(0).random((args.batch_size, size, size, 1), np.float32)
  sync = torch.cuda.synchronize if recipe.device.type == 'cuda' else lambda: None
  for _ in range(args.warmup):
    recipe.step(images)
  sync()
  start = time.perf_counter()
  for _ in range(args.steps):
    loss = recipe.step(images)
  sync()
  rate = args.steps / (time.perf_counter() - start)
  print(json.dumps({'reference': 'pytorch eager', 'model': args.model,
                    'norm': config.model.get('norm'),
                    'device': torch.cuda.get_device_name() if recipe.device.type == 'cuda' else 'cpu',
                    'threads': torch.get_num_threads(), 'torch': torch.__version__,
                    'batch_size': args.batch_size, 'steps_per_second': round(rate, 3),
                    'final_loss': round(float(loss.detach()), 3)}))


if __name__ == '__main__':
  main()
