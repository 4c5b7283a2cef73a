"""The TracksTo4D network and its losses (seeds/tracksto4d_*.txt, sections 2.2-2.3, appendix B).

Input: point tracks ``M`` of shape (B, N, P, 3) -- x, y in normalised camera coordinates
((pixel - principal point) / focal) and a visibility flag. Output (:class:`Outputs`): per frame a
camera (rotation from the 6-D representation, camera centre) and K-1 basis coefficients, per point
K basis points (B1 the static cloud) and a motion level gamma. The frame at time t sees the points
``X_t = B1 + sum_k c_tk B_k`` through ``R_t^T (X - t_t)`` (R_t camera-to-world, t_t the centre).

Every layer treats frames and points as sets: attention across the frames of each point, then
across the points of each frame, no positional encodings, mean pooling, per-element heads. The
paper's camera head is a temporal convolution (kernel 31), which is not equivariant to frame
order; here it is a per-frame linear layer, so permuting frames or points permutes the outputs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

# The paper's pre-training puts every camera at (0, 0, -15) facing +z; the heads start there (their
# biases), and the point head's output is scaled so a unit output spans the field of view at that depth.
START_CENTRE = (0.0, 0.0, -15.0)
POINT_SCALE = 10.0
MIN_GAMMA = 1e-4


@dataclass
class NetConfig:
    dim: int = 64  # feature width (paper 256)
    heads: int = 4  # paper 16
    layers: int = 2  # pairs of (frame attention, point attention) (paper 3)
    ffn: int = 128  # hidden width of each layer's MLP (paper 2048)
    bases: int = 12  # K, basis elements of the dynamic cloud (paper 12)
    frequencies: int = 6  # sinusoidal embedding octaves per coordinate (paper 12)


@dataclass
class Outputs:
    rotation: torch.Tensor  # (B, N, 3, 3) camera-to-world
    centre: torch.Tensor  # (B, N, 3) camera centres in the world
    coefficients: torch.Tensor  # (B, N, K-1) of the non-static bases
    bases: torch.Tensor  # (B, P, K, 3); bases[:, :, 0] is the static cloud B1
    gamma: torch.Tensor  # (B, P) motion level, in normalised image units

    def points(self, detach_static: bool = False) -> torch.Tensor:
        """(B, N, P, 3) the dynamic cloud X_t (with B1 detached if asked)."""
        static = self.bases[:, :, 0].detach() if detach_static else self.bases[:, :, 0]
        moving = torch.einsum("bnk,bpkc->bnpc", self.coefficients, self.bases[:, :, 1:])
        return static[:, None] + moving


def rotation_from_6d(a: torch.Tensor) -> torch.Tensor:
    """Zhou et al.'s continuous rotation representation: Gram-Schmidt on two 3-vectors (columns)."""
    b1 = nn.functional.normalize(a[..., 0:3], dim=-1)
    a2 = a[..., 3:6]
    b2 = nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    return torch.stack([b1, b2, torch.cross(b1, b2, dim=-1)], dim=-1)


def embed(tracks: torch.Tensor, frequencies: int) -> torch.Tensor:
    """Sinusoidal features of x and y (zero where the point is not visible), the raw coordinates, visibility."""
    xy, vis = tracks[..., :2], tracks[..., 2:3]
    scales = math.pi * 2.0 ** torch.arange(frequencies, dtype=tracks.dtype, device=tracks.device)
    angles = (xy[..., None] * scales).flatten(-2)
    return torch.cat([torch.sin(angles) * vis, torch.cos(angles) * vis, xy * vis, vis], dim=-1)


class SetAttention(nn.Module):
    """Pre-norm self-attention plus MLP along one axis of (B, N, P, D): "frames" or "points"."""

    def __init__(self, dim: int, heads: int, ffn: int, axis: str):
        super().__init__()
        if axis not in ("frames", "points"):
            raise ValueError(f"axis must be 'frames' or 'points', not {axis!r}")
        self.axis = axis
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, p, d = x.shape
        seq = x.transpose(1, 2).reshape(b * p, n, d) if self.axis == "frames" else x.reshape(b * n, p, d)
        y = self.norm1(seq)
        seq = seq + self.attention(y, y, y, need_weights=False)[0]
        seq = seq + self.mlp(self.norm2(seq))
        return seq.reshape(b, p, n, d).transpose(1, 2) if self.axis == "frames" else seq.reshape(b, n, p, d)


class TracksTo4D(nn.Module):
    def __init__(self, cfg: NetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or NetConfig()
        self.inp = nn.Linear(4 * cfg.frequencies + 3, cfg.dim)
        self.blocks = nn.ModuleList(
            SetAttention(cfg.dim, cfg.heads, cfg.ffn, axis) for _ in range(cfg.layers) for axis in ("frames", "points")
        )
        self.norm = nn.LayerNorm(cfg.dim)
        self.point_head = nn.Linear(cfg.dim, 3 * cfg.bases + 1)
        self.frame_head = nn.Linear(cfg.dim, 6 + 3 + cfg.bases - 1)
        with torch.no_grad():  # start at the paper's pre-training target: cameras behind the origin facing it
            for head in (self.point_head, self.frame_head):
                head.weight.mul_(0.1)
                head.bias.zero_()
            self.frame_head.bias[:6] = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
            self.frame_head.bias[6:9] = torch.tensor(START_CENTRE)

    def forward(self, tracks: torch.Tensor) -> Outputs:
        """``tracks`` (B, N, P, 3) or (N, P, 3) (a batch of one)."""
        if tracks.dim() == 3:
            tracks = tracks[None]
        x = self.inp(embed(tracks, self.cfg.frequencies))
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        per_point = self.point_head(x.mean(dim=1))  # (B, P, 3K+1)
        per_frame = self.frame_head(x.mean(dim=2))  # (B, N, 6+3+K-1)
        k = self.cfg.bases
        bases = per_point[..., : 3 * k].reshape(*per_point.shape[:2], k, 3) * POINT_SCALE
        gamma = nn.functional.softplus(per_point[..., 3 * k]) * 0.01 + MIN_GAMMA  # about 0.007 at start
        return Outputs(
            rotation=rotation_from_6d(per_frame[..., :6]),
            centre=per_frame[..., 6:9],
            coefficients=per_frame[..., 9:],
            bases=bases,
            gamma=gamma,
        )

    def describe(self) -> dict:
        return {"config": asdict(self.cfg), "parameters": sum(p.numel() for p in self.parameters())}


# -- losses (section 2.3) ------------------------------------------------------------------------------

WEIGHTS = {"reproject": 50.0, "static": 1.0, "negative": 1.0, "sparse": 0.001}  # appendix B


def to_camera(points: torch.Tensor, rotation: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """(B, N, P, 3) world points (or (B, P, 3), shared by every frame) in each frame's camera: R^T (X - t)."""
    if points.dim() == 3:
        points = points[:, None]
    return torch.einsum("bnji,bnpj->bnpi", rotation, points - centre[:, :, None])


def reprojection(cam: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """(B, N, P) image distance between projected camera points and the observed normalised xy."""
    z = cam[..., 2:3]
    safe = torch.where(z > 1e-3, z, torch.full_like(z, 1e-3))  # behind the camera: L_negative's job
    return torch.linalg.vector_norm(cam[..., :2] / safe - observed, dim=-1)


def losses(out: Outputs, tracks: torch.Tensor, detach_static: bool = False) -> dict[str, torch.Tensor]:
    """The four terms of equation 4, each a mean over the observed points, and their weighted ``total``.

    ``detach_static``: the paper detaches B1 and the poses from L_Reproject during training."""
    if tracks.dim() == 3:
        tracks = tracks[None]
    xy, vis = tracks[..., :2], tracks[..., 2]
    count = vis.sum().clamp(min=1.0)
    rot, centre = (out.rotation.detach(), out.centre.detach()) if detach_static else (out.rotation, out.centre)
    dynamic = to_camera(out.points(detach_static), rot, centre)
    static = to_camera(out.bases[:, :, 0], out.rotation, out.centre)
    gamma = out.gamma[:, None]  # one per point, every frame
    r_static = reprojection(static, xy)
    terms = {
        "reproject": (vis * reprojection(dynamic, xy)).sum() / count,
        "static": (vis * torch.log(gamma + r_static**2 / gamma)).sum() / count,
        # the paper sums; a mean keeps the weight independent of the clip's size
        "negative": -(vis * torch.clamp(to_camera(out.points(), out.rotation, out.centre)[..., 2], max=0.0)).sum()
        / count,
        "sparse": (out.bases[:, :, 1:].abs().sum(-1) / (3 * out.gamma.detach()[..., None])).mean(),
    }
    terms["total"] = sum(WEIGHTS[k] * v for k, v in terms.items())
    return terms
