"""The official recipes' train steps in eager PyTorch, timed on this machine.

The baseline that `bench.py` is compared with: the same computation as the
official scripts (cwkx/GON), written with torch.nn, at batch 64 on random
images:

* conv: GON.py. A DCGAN-style decoder of ConvTranspose2d layers (latent 32,
  ngf 16, 32x32), BatchNorm2d (`--norm batch`, the official choice) or
  GroupNorm with one group (`--norm layer`, conv_mnist's), ELU; the latent is
  minus the gradient at zeros of the batch-mean summed squared error,
  computed with `torch.autograd.grad(create_graph=True)`; Adam 1e-4.
* siren: Implicit-GON.py. A SIREN 4x256 (w0 30) over concat(coordinates,
  latent) on the 28x28 grid, latent 32, the same GON step.

  python benchmarks/pytorch_reference.py --model conv [--norm layer] [--device cuda]
  python benchmarks/pytorch_reference.py --model siren --steps 10

Prints one JSON line: steps per second after warm-up.
"""

import argparse
import json
import time

import torch
from torch import nn


def conv_decoder(latent_dim: int, features: int, norm: str) -> nn.Module:
  layers, widths = [], [latent_dim, 4 * features, 2 * features, features]
  for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
    layers += [nn.ConvTranspose2d(c_in, c_out, 4, 1 if i == 0 else 2, 0 if i == 0 else 1),
               nn.BatchNorm2d(c_out) if norm == 'batch' else nn.GroupNorm(1, c_out), nn.ELU()]
  layers += [nn.ConvTranspose2d(features, 1, 4, 2, 1), nn.Sigmoid()]
  return nn.Sequential(*layers)


class Sine(nn.Module):

  def __init__(self, w0: float):
    super().__init__()
    self.w0 = w0

  def forward(self, x):
    return torch.sin(self.w0 * x)


def siren(in_features: int, width: int, depth: int, w0: float) -> nn.Module:
  layers, fan_in = [], in_features
  for _ in range(depth):
    layers += [nn.Linear(fan_in, width), Sine(w0)]
    fan_in = width
  return nn.Sequential(*layers, nn.Linear(width, 1))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model', choices=('conv', 'siren'), default='conv')
  parser.add_argument('--norm', choices=('batch', 'layer'), default='batch')
  parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
  parser.add_argument('--batch_size', type=int, default=64)
  parser.add_argument('--steps', type=int, default=50)
  parser.add_argument('--warmup', type=int, default=5)
  args = parser.parse_args()
  device, batch, latent_dim = torch.device(args.device), args.batch_size, 32
  torch.manual_seed(0)
  if args.model == 'conv':
    decoder = conv_decoder(latent_dim, 16, args.norm).to(device)
    images = torch.rand(batch, 1, 32, 32, device=device)
    origin = lambda: torch.zeros(batch, latent_dim, 1, 1, device=device)
    decode = decoder
  else:
    decoder = siren(2 + latent_dim, 256, 4, 30.0).to(device)
    images = torch.rand(batch, 28 * 28, 1, device=device)
    side = torch.linspace(-1, 1, 28, device=device)
    coordinates = torch.stack(torch.meshgrid(side, side, indexing='ij'), -1).reshape(-1, 2)
    origin = lambda: torch.zeros(batch, latent_dim, device=device)

    def decode(z):
      inputs = torch.cat([coordinates.expand(batch, -1, -1),
                          z[:, None, :].expand(-1, coordinates.shape[0], -1)], -1)
      return decoder(inputs)
  optimiser = torch.optim.Adam(decoder.parameters(), lr=1e-4)

  def step():
    z = origin().requires_grad_()
    inner = ((decode(z) - images) ** 2).sum(1).mean()
    z = -torch.autograd.grad(inner, [z], create_graph=True, retain_graph=True)[0]
    outer = ((decode(z) - images) ** 2).sum(1).mean()
    optimiser.zero_grad()
    outer.backward()
    optimiser.step()
    return outer

  sync = torch.cuda.synchronize if device.type == 'cuda' else lambda: None
  for _ in range(args.warmup):
    step()
  sync()
  start = time.perf_counter()
  for _ in range(args.steps):
    loss = step()
  sync()
  rate = args.steps / (time.perf_counter() - start)
  print(json.dumps({'reference': 'pytorch eager', 'model': args.model, 'norm': args.norm,
                    'device': torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu',
                    'threads': torch.get_num_threads(), 'torch': torch.__version__,
                    'batch_size': batch, 'steps_per_second': round(rate, 3),
                    'final_loss': round(float(loss.detach()), 3)}))


if __name__ == '__main__':
  main()
