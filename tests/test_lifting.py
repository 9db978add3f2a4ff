"""Lifting (:mod:`m3dhmr.models.lifting`): features sampled at the landmarks, lifted by M."""

import torch

from m3dhmr.models.lifting import lift, lifting_init, sample_features


def test_sample_features_pixel_convention():
    # A 4x4 feature map at stride 4 covers a 16x16 crop; cell (i, j) centre = 4j + 1.5.
    f = torch.arange(16.0).view(1, 1, 4, 4)
    pts = torch.tensor([[[1.5, 1.5], [5.5, 9.5], [3.5, 1.5], [-10.0, 100.0]]])
    out = sample_features(f, pts, stride=4.0)
    # centre of (0,0) -> 0; centre of (2,1) -> 9; halfway between (0,0) and (0,1) -> 0.5;
    # outside -> border value of (3,0) = 12.
    torch.testing.assert_close(out[0, :, 0], torch.tensor([0.0, 9.0, 0.5, 12.0]))


def test_sample_features_matches_naive_bilinear():
    f = torch.randn(2, 3, 5, 6)
    pts = torch.rand(2, 4, 2) * torch.tensor([6 * 4 - 1.0, 5 * 4 - 1.0])
    out = sample_features(f, pts, stride=4.0)
    for b in range(2):
        for j in range(4):
            # cell coordinates, centres at integers
            cx, cy = (pts[b, j, 0] + 0.5) / 4 - 0.5, (pts[b, j, 1] + 0.5) / 4 - 0.5
            cx, cy = cx.clamp(0, 5), cy.clamp(0, 4)
            x0, y0 = int(cx.floor().clamp(max=4)), int(cy.floor().clamp(max=3))
            ax, ay = cx - x0, cy - y0
            ref = ((1 - ax) * (1 - ay) * f[b, :, y0, x0] + ax * (1 - ay) * f[b, :, y0, x0 + 1]
                   + (1 - ax) * ay * f[b, :, y0 + 1, x0] + ax * ay * f[b, :, y0 + 1, x0 + 1])
            torch.testing.assert_close(out[b, j], ref)


def test_lift_is_the_matrix_times_the_sampled_features_and_init_variance():
    torch.manual_seed(0)
    f = torch.randn(2, 5, 8, 8)
    pts = torch.rand(2, 3, 2) * 32
    M = torch.randn(7, 3)
    out = lift(M, f, pts)
    ref = torch.stack([torch.stack([sum(M[v, j] * sample_features(f, pts)[b, j] for j in range(3))
                                    for v in range(7)]) for b in range(2)])
    torch.testing.assert_close(out, ref)
    init = lifting_init(4000, 21)
    assert abs(float(init.var()) - 1 / 21) < 0.005 and float(init.abs().max()) <= (3 / 21) ** 0.5
