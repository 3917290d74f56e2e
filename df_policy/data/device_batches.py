"""Training batches gathered on the training device, for data sets that fit in its memory.

A 2-core host cannot feed a GPU through a DataLoader (the PushT image task needs ~1,500
samples/s; the numpy loader gives a few hundred). The PushT store is ~0.7 GB of uint8 frames, so
:class:`DeviceBatcher` uploads the used keys once (images as uint8, low-dim keys and the action
already normalised as float32) together with every window's step indices, and then builds each
batch on the device: sample indices, one gather per key, random crop (training) or centre crop
(validation) by index arithmetic. The batches follow the contract of
:class:`~df_policy.data.dataset.WindowDataset` exactly (same keys, dtypes, shapes and
normalisation), so the model cannot tell the two paths apart; sampling is with replacement.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from df_policy.data.dataset import WindowDataset
from df_policy.data.symmetry import mirror_images_chw


class DeviceBatcher:
    """Batches of ``dataset`` built on ``device`` (see the module docstring).

    Args:
        dataset: a :class:`WindowDataset` whose arrays are resident in RAM (``cache`` ``ram``
            or ``auto`` on a machine with enough memory).
        device: where the data and the batches live.
    """

    def __init__(self, dataset: WindowDataset, device: torch.device | str) -> None:
        arrays = dataset.arrays
        if not arrays.in_ram:
            raise ValueError("train.data_on_device needs the data in RAM first: set dataset.cache=ram")
        self.device = torch.device(device)
        self.train = dataset.train
        cfg = dataset.cfg
        self.crop = cfg.crop_shape
        self.lowdim_noise_std = float(cfg.lowdim_noise_std)
        all_samples = np.arange(len(dataset), dtype=np.int64)
        obs_idx, obs_pad = dataset.index.obs_indices(all_samples)
        act_idx, act_pad = dataset.index.action_indices(all_samples)
        steps = np.arange(arrays.reader.n_steps, dtype=np.int64)
        up = lambda a: torch.as_tensor(np.ascontiguousarray(a), device=self.device)  # noqa: E731
        self.obs_idx, self.obs_pad = up(obs_idx), up(obs_pad)
        self.act_idx, self.act_pad = up(act_idx), up(act_pad)
        self.images = {k: up(arrays.gather(k, steps)) for k in dataset.image_keys}  # (T, H, W, C) uint8
        # with a mirror (training only), the mirror images follow the steps: row s + n_steps
        # is step s mirrored, and a mirrored window reads its rows from there
        self.mirror_prob = float(cfg.mirror.prob) if self.train and cfg.mirror is not None else 0.0
        self.image_ops = dict(cfg.mirror.images) if cfg.mirror is not None else {}
        self.n_steps = len(steps)

        def normalized(key: str) -> Tensor:
            rows = [arrays.gather(key, steps)]
            if self.mirror_prob > 0:
                rows.append(arrays.gather(key, steps, np.ones(len(steps), dtype=bool)))
            return up(dataset.normalizer.normalize(key, np.concatenate(rows)).astype(np.float32))

        self.lowdim = {k: normalized(k) for k in dataset.lowdim_keys}
        self.action = normalized(dataset.action_key)
        self.nbytes = sum(t.numel() * t.element_size() for t in [*self.images.values(), *self.lowdim.values(),
                                                                   self.action, self.obs_idx, self.act_idx])

    def __len__(self) -> int:
        return int(self.obs_idx.shape[0])

    def _crop(self, frames: Tensor, idx: Tensor, generator: torch.Generator | None, train: bool) -> Tensor:
        """``frames (T, H, W, C)`` at steps ``idx (B, To)`` -> ``(B, To, C, h, w)`` uint8."""
        H, W = frames.shape[1:3]
        if self.crop is None:
            return frames[idx].permute(0, 1, 4, 2, 3).contiguous()
        h, w = self.crop
        B = idx.shape[0]
        if train:
            ys = torch.randint(0, H - h + 1, (B,), generator=generator, device=self.device)
            xs = torch.randint(0, W - w + 1, (B,), generator=generator, device=self.device)
        else:
            ys = torch.full((B,), (H - h) // 2, device=self.device)
            xs = torch.full((B,), (W - w) // 2, device=self.device)
        rows = ys[:, None] + torch.arange(h, device=self.device)   # (B, h)
        cols = xs[:, None] + torch.arange(w, device=self.device)   # (B, w)
        out = frames[idx[:, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]  # (B, To, h, w, C)
        return out.permute(0, 1, 4, 2, 3).contiguous()

    def batch(self, samples: Tensor, generator: torch.Generator | None = None, train: bool | None = None
              ) -> dict[str, Tensor]:
        """The batch of window indices ``samples (B,)`` (int64 on the device)."""
        train = self.train if train is None else train
        obs_idx, act_idx = self.obs_idx[samples], self.act_idx[samples]
        batch = {f"obs.{k}": self._crop(v, obs_idx, generator, train) for k, v in self.images.items()}
        if train and self.mirror_prob > 0:  # dataset.mirror: whole windows, images after the crop
            flip = torch.rand(samples.shape, generator=generator, device=self.device) < self.mirror_prob
            for k, op in self.image_ops.items():
                x = batch[f"obs.{k}"]
                batch[f"obs.{k}"] = torch.where(flip[:, None, None, None, None], mirror_images_chw(x, op), x)
            offset = flip.long()[:, None] * self.n_steps
            obs_idx, act_idx = obs_idx + offset, act_idx + offset
        for k, v in self.lowdim.items():
            x = v[obs_idx]
            if train and self.lowdim_noise_std > 0:  # dataset.lowdim_noise_std, as WindowDataset adds it
                x = x + self.lowdim_noise_std * torch.randn(x.shape, generator=generator, device=self.device)
            batch[f"obs.{k}"] = x
        batch["action"] = self.action[act_idx]
        batch["obs_is_pad"] = self.obs_pad[samples]
        batch["action_is_pad"] = self.act_pad[samples]
        batch["index"] = samples
        return batch

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """A random batch (windows drawn uniformly with replacement)."""
        samples = torch.randint(0, len(self), (batch_size,), generator=generator, device=self.device)
        return self.batch(samples, generator)
