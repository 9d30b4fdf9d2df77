"""invert.restyle: the one residual loop — per-pass graphs and the gradient-on-the-last-pass flag."""

from __future__ import annotations

import torch

from mvinvert_cli.invert.restyle import average_image, residual_inversion, residual_passes, to_signed

from .conftest import tiny_encoder


def _passes(generator, last_pass_grad: bool, iterations: int = 3):
    encoder = tiny_encoder().eval()
    w_avg = generator.mean_latent(200)
    x = to_signed(torch.rand(2, 3, 32, 32))
    with torch.no_grad():
        average = average_image(generator, w_avg, 32)
    return encoder, list(residual_passes(encoder, generator, w_avg, x, average, iterations,
                                         last_pass_grad=last_pass_grad))


def test_only_the_last_pass_keeps_a_graph(generator):
    encoder, passes = _passes(generator, last_pass_grad=True)
    assert [p.index for p in passes] == [0, 1, 2]
    assert [p.latent.requires_grad for p in passes] == [False, False, True]
    passes[-1].current.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())


def test_every_pass_keeps_its_own_graph_on_detached_inputs(generator):
    _, passes = _passes(generator, last_pass_grad=False)
    assert all(p.latent.requires_grad and p.current.requires_grad for p in passes)
    # pass 2 does not reach back into pass 1: its inputs were detached
    grad = torch.autograd.grad(passes[2].current.sum(), passes[1].latent, allow_unused=True)[0]
    assert grad is None


def test_no_graph_when_the_caller_disables_gradients(generator):
    with torch.no_grad():
        _, passes = _passes(generator, last_pass_grad=False)
    assert not any(p.latent.requires_grad for p in passes)


def test_the_flag_does_not_change_the_values(generator):
    targets = torch.rand(2, 3, 32, 32)
    encoder = tiny_encoder().eval()
    w_avg = generator.mean_latent(200)
    with torch.no_grad():
        plain = residual_inversion(encoder, generator, w_avg, targets, iterations=3)
    graph = residual_inversion(encoder, generator, w_avg, targets, iterations=3, last_pass_grad=False)
    assert graph.final.requires_grad
    torch.testing.assert_close(graph.final.detach(), plain.final)
    torch.testing.assert_close(graph.latents.detach(), plain.latents)
