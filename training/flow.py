"""The generative head: conditional flow matching over a relaxed parameter vector.

Many presets make one sound, so a point regression averages equivalent answers. This head instead
learns to transport Gaussian noise to the distribution of parameter vectors given the encoder's
embedding (rectified flow: straight paths, velocity target ``x1 - x0``), and ``sample`` draws K
candidates per sound with a fixed number of Euler steps, deterministic given the noise, so ONNX
export can trace it with the noise as an input.

The relaxed vector has one column per model output (decode.py's layout): knobs and switches mapped
to [-1, 1], modulation amounts as they are, categoricals one-hot in {-1, 1}. Sampling maps it back
to a valid vector (argmax per categorical, switches at 0, weak routes dropped). The head reads the
embedding detached, so it never pulls the encoder away from the regression heads. Targets the
sound cannot show (``training.losses.audible_mask``) are replaced by the init patch's values, so the
flow learns only audible dimensions and its samples leave the inaudible ones at Vital's defaults.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from converter.matching.decode import MODULATION_THRESHOLD, output_slices
from converter.vital.parameters import Kind, parameter_space
from converter.vital.preset import init_preset, vector_from_preset
from training.losses import categorical_gather

TIME_FEATURES = 32


class FlowHead(nn.Module):
    """Velocity field v(x_t, t | embedding) and its Euler sampler."""

    def __init__(self, embedding_dim: int, hidden: int = 384, depth: int = 3, steps: int = 10) -> None:
        super().__init__()
        space = parameter_space()
        self.dim = space.output_size
        self.steps = steps
        layers: list[nn.Module] = [nn.Linear(self.dim + TIME_FEATURES + embedding_dim, hidden), nn.GELU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.GELU()]
        layers.append(nn.Linear(hidden, self.dim))
        self.velocity = nn.Sequential(*layers)
        starts = np.array([s.start for s in output_slices(space)])
        kinds = [p.kind for p in space.parameters]
        categorical = space.indices(Kind.CATEGORICAL)
        gather = categorical_gather(space)
        selector = np.zeros((len(categorical), len(space)), np.float32)
        selector[np.arange(len(categorical)), categorical] = 1.0
        self.register_buffer("starts", torch.from_numpy(starts), persistent=False)
        self.register_buffer("categorical", torch.from_numpy(categorical), persistent=False)
        self.register_buffer("gather", torch.from_numpy(gather), persistent=False)
        self.register_buffer("selector", torch.from_numpy(selector), persistent=False)
        for name, kind in (("is_switch", Kind.SWITCH), ("is_modulation", Kind.MODULATION),
                           ("is_categorical", Kind.CATEGORICAL)):
            self.register_buffer(name, torch.tensor([k is kind for k in kinds]), persistent=False)
        self.register_buffer("init_vector", torch.from_numpy(vector_from_preset(init_preset(), space)),
                             persistent=False)
        self.register_buffer("frequencies", torch.exp(torch.linspace(0, math.log(1000), TIME_FEATURES // 2)),
                             persistent=False)

    def relax(self, vectors: torch.Tensor) -> torch.Tensor:
        """(B, P) parameter vectors -> (B, dim) points the flow is trained to reach."""
        signed = torch.where(self.is_modulation, vectors, 2.0 * vectors - 1.0)
        relaxed = -torch.ones(vectors.shape[0], self.dim, dtype=vectors.dtype, device=vectors.device)
        plain = ~self.is_categorical
        relaxed[:, self.starts[plain]] = signed[:, plain]
        choice = vectors[:, self.categorical].round().long()
        hot = torch.gather(self.gather.expand(len(vectors), -1, -1), 2, choice.unsqueeze(-1)).squeeze(-1)
        relaxed.scatter_(1, hot, 1.0)
        return relaxed

    def _time(self, t: torch.Tensor) -> torch.Tensor:
        angles = t.unsqueeze(-1) * self.frequencies
        return torch.cat([angles.sin(), angles.cos()], dim=-1)

    def _velocity(self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.velocity(torch.cat([x, self._time(t), condition], dim=-1))

    def loss(self, embedding: torch.Tensor, vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Flow-matching loss for (B, D) embeddings, (B, P) canonical target vectors and their audible mask."""
        target = self.relax(torch.where(mask, vectors, self.init_vector.to(vectors.dtype)))
        noise = torch.randn_like(target)
        t = torch.rand(len(target), device=target.device, dtype=target.dtype)
        point = noise + t.unsqueeze(-1) * (target - noise)
        return F.mse_loss(self._velocity(point, t, embedding.detach()), target - noise)

    def vectors(self, relaxed: torch.Tensor) -> torch.Tensor:
        """(..., dim) relaxed points -> (..., P) valid parameter vectors."""
        values = relaxed[..., self.starts]
        amount = values.clamp(-1.0, 1.0)
        amount = torch.where(amount.abs() >= MODULATION_THRESHOLD, amount, torch.zeros_like(amount))
        knob = ((values + 1.0) / 2.0).clamp(0.0, 1.0)
        switch = (values > 0).to(values.dtype)
        plain = torch.where(self.is_modulation, amount, torch.where(self.is_switch, switch, knob))
        logits = relaxed[..., self.gather.clamp_min(0)].masked_fill(self.gather < 0, -1e4)
        choice = logits.argmax(dim=-1).to(values.dtype)
        return torch.where(self.is_categorical, torch.matmul(choice, self.selector), plain)

    def sample(self, embedding: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """(B, D) embeddings and (B, K, dim) Gaussian noise -> (B, K, P) candidate vectors."""
        batch, candidates, _ = noise.shape
        condition = embedding.unsqueeze(1).expand(-1, candidates, -1).reshape(batch * candidates, -1)
        x = noise.reshape(batch * candidates, self.dim)
        step = 1.0 / self.steps
        for k in range(self.steps):
            t = torch.zeros_like(x[:, 0]) + k * step
            x = x + step * self._velocity(x, t, condition)
        return self.vectors(x).reshape(batch, candidates, -1)
