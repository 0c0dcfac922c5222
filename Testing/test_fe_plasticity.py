"""Elastic-plastic analysis (issue 13): return mapping at the integration points against the
analytic uniaxial solution, the asymmetric yield surface, and the yield order of a
two-material bar."""

from __future__ import annotations

import numpy as np
import pytest

from boneqct.fe.analysis import build_model, nonlinear_curve
from boneqct.fe.materials import get_law
from boneqct.fe.mesh import BONE, VoxelMesh
from boneqct.fe.plasticity import Surface, yield_function


def _bar(bmd_kji, element_mm: float = 1.0) -> VoxelMesh:
    bmd_kji = np.asarray(bmd_kji, float)
    material = np.full(bmd_kji.shape, BONE, np.uint8)
    return VoxelMesh(element_mm, material, bmd_kji, "K2HPO4", np.eye(4),
                     bmd_kji.shape[0] * element_mm, np.ones(bmd_kji.shape))


@pytest.mark.parametrize("law", ["kopperdahl2002", "morgan2003"])
def test_cube_in_uniaxial_compression_yields_at_sigma_c_a_with_the_prescribed_slope(law):
    """Homogeneous cube between frictionless platens: the force at first yield is
    sigma_yc x A (compressive yield, not the tensile one: morgan2003 has sigma_yt < sigma_yc),
    and past it the force rises with the prescribed tangent eta x E x A / L, within 1%."""
    h, shape, bmd, eta = 1.5, (6, 6, 6), 150.0, 0.05
    model = build_model(_bar(np.full(shape, bmd), h), law, platens="frictionless")
    model.post_yield_fraction[:] = eta
    curve, solution, converged = nonlinear_curve(model, steps=8, rtol=1e-10,
                                                 residual_rtol=1e-6)
    area, length = (shape[1] * h) * (shape[2] * h), shape[0] * h
    e = float(get_law(law).modulus_mpa(bmd, "K2HPO4"))
    sigma_c = float(get_law(law).yield_stress_mpa(bmd, "K2HPO4", "compression"))
    assert converged
    first_plastic = next(i for i, p in enumerate(curve) if p["iterations"] > 0)
    first_yield = curve[first_plastic - 1]  # the exact first-yield point of the curve
    assert first_yield["force_n"] == pytest.approx(sigma_c * area, rel=0.01)
    assert first_yield["displacement_mm"] == pytest.approx(sigma_c / e * length, rel=0.01)
    plastic = [p for p in curve if p["displacement_mm"] > first_yield["displacement_mm"]]
    slope = ((plastic[-1]["force_n"] - plastic[0]["force_n"])
             / (plastic[-1]["displacement_mm"] - plastic[0]["displacement_mm"]))
    assert slope == pytest.approx(eta * e * area / length, rel=0.01)
    assert solution.yielded.all()


def test_the_yield_surface_meets_both_uniaxial_yield_stresses():
    """f = 0 at uniaxial compression sigma_yc and uniaxial tension sigma_yt (morgan2003:
    0.77% and 0.70% of E), negative inside, positive beyond; von Mises when they are equal."""
    model = build_model(_bar(np.full((2, 1, 1), 150.0)), "morgan2003")
    surface = Surface.of_model(model)
    sigma_c, sigma_t = model.yield_compression_mpa[0], model.yield_tension_mpa[0]
    assert sigma_t < sigma_c
    for stress, expected in ((-sigma_c, 0.0), (sigma_t, 0.0)):
        uniaxial = np.zeros((2, 6))
        uniaxial[:, 2] = stress
        assert yield_function(surface, uniaxial) == pytest.approx(expected, abs=1e-9 * sigma_c)
        assert np.all(yield_function(surface, 0.99 * uniaxial) < 0)
        assert np.all(yield_function(surface, 1.01 * uniaxial) > 0)
    symmetric = Surface.of_model(build_model(_bar(np.full((2, 1, 1), 150.0)), "kopperdahl2002"))
    assert np.all(symmetric.beta == 0.0)


def test_two_material_bar_yields_weaker_part_first():
    """A bar of two densities in series carries one axial force: the low-density half yields
    first and alone; the force then stays between its yield force and the dense half's (above
    sigma_y A of the weak half because the dense half restrains the plastic half's lateral
    flow at their interface)."""
    shape = (8, 3, 3)
    bmd = np.full(shape, 160.0)
    bmd[:4] = 80.0  # weaker bottom half
    model = build_model(_bar(bmd), "kopperdahl2002", platens="frictionless")
    weak = np.zeros(shape, bool)
    weak[:4] = True
    weak = weak[model.mesh.elements_kji]
    curve, solution, converged = nonlinear_curve(model, steps=10, rtol=1e-10,
                                                 residual_rtol=1e-6)
    assert converged
    assert solution.yielded[weak].all() and not solution.yielded[~weak].any()
    area = shape[1] * shape[2]
    sigma_weak, sigma_strong = (float(get_law("kopperdahl2002").yield_stress_mpa(d, "K2HPO4"))
                                for d in (80.0, 160.0))
    first_plastic = next(i for i, p in enumerate(curve) if p["iterations"] > 0)
    # first yield near the interface, where the stiffness mismatch adds lateral stress
    assert curve[first_plastic - 1]["force_n"] == pytest.approx(sigma_weak * area, rel=0.05)
    assert sigma_weak * area < curve[-1]["force_n"] < sigma_strong * area
    first = next(p for p in curve if p["yielded_fraction"] > 0)
    assert 0 < first["yielded_fraction"] <= weak.mean()
