"""CXR preprocessing: view filter, decoding (PNG/JPG/DICOM, bit depths, polarity), resize, transforms."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medbind_lib.errors import DataError
from medbind_lib.preprocess import cxr
from medbind_lib.quality import QualityLog


# ---------------------------------------------------------------- views

def test_filter_views_counts_exclusions():
    df = pd.DataFrame({"record_id": list("abcdefg"),
                       "view": ["PA", "AP", "LATERAL", "", None, "LL", "AP AXIAL"]})
    q = QualityLog()
    out = cxr.filter_views(df, ["AP", "PA"], q, "mimic_cxr")
    assert out["record_id"].tolist() == ["a", "b"]
    assert q.count("mimic_cxr", reason="lateral view") == 2
    assert q.count("mimic_cxr", reason="missing view") == 2
    assert q.count("mimic_cxr", reason="other view (AP AXIAL)") == 1
    assert q.count("mimic_cxr") == 5
    assert cxr.filter_views(df, ["pa"], None, "x")["record_id"].tolist() == ["a"]


# ---------------------------------------------------------------- decoding

@pytest.mark.realdata
def test_nih_pngs_decode_to_uint8_1024(realdata):
    paths = sorted((realdata / "nih_chestxray14/images").glob("*.png"))
    assert len(paths) >= 3
    for p in paths[:3]:
        img = cxr.load_image(p)
        assert img.dtype == np.uint8 and img.shape == (1024, 1024)
        np.testing.assert_array_equal(img, np.asarray(Image.open(p)))
        assert img.std() > 10  # an actual radiograph, not a blank


def test_16bit_png_rescaled_min_max(tmp_path):
    a = np.array([[1000, 2000], [3000, 1500]], dtype=np.uint16)
    p = tmp_path / "x16.png"
    Image.fromarray(a).save(p)
    assert Image.open(p).mode.startswith("I")
    img = cxr.load_image(p)
    # (v - 1000) * 255 / 2000, rounded: 0, 127.5 -> 128, 255, 63.75 -> 64
    np.testing.assert_array_equal(img, np.array([[0, 128], [255, 64]], np.uint8))


def test_rgb_and_rgba_to_grey(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 150, 200
    Image.fromarray(rgb).save(tmp_path / "c.png")
    Image.fromarray(np.dstack([rgb, np.full((4, 4), 255, np.uint8)])).save(tmp_path / "c4.png")
    expect = round(100 * 299 / 1000 + 150 * 587 / 1000 + 200 * 114 / 1000)  # ITU-R 601 luma = 140
    for name in ("c.png", "c4.png"):
        img = cxr.load_image(tmp_path / name)
        assert img.shape == (4, 4) and img.dtype == np.uint8
        assert abs(int(img[0, 0]) - expect) <= 1


def test_truncated_and_corrupt_files_are_data_errors(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (256, 256), dtype=np.uint8)).save(tmp_path / "ok.jpg", quality=90)
    raw = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    assert cxr.load_image(tmp_path / "ok.jpg").shape == (256, 256)
    for name in ("trunc.jpg", "junk.png", "absent.png"):
        with pytest.raises(DataError) as e:
            cxr.load_image(tmp_path / name)
        assert name in str(e.value) and e.value.file.endswith(name)


def _dicom(path, arr, photometric, bits):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.set_pixel_data(arr, photometric, bits)
    ds.save_as(path, enforce_file_format=True)
    return ds


@pytest.mark.parametrize("bits,dtype", [(8, np.uint8), (12, np.uint16)])
def test_dicom_polarity(tmp_path, bits, dtype):
    hi = 2 ** bits - 1
    arr = np.zeros((32, 24), dtype)
    arr[8:16, 4:12] = hi  # a square of maximal raw value
    arr[0, 0] = hi // 2
    _dicom(tmp_path / "m2.dcm", arr, "MONOCHROME2", bits)
    _dicom(tmp_path / "m1.dcm", arr, "MONOCHROME1", bits)
    m2, m1 = cxr.load_image(tmp_path / "m2.dcm"), cxr.load_image(tmp_path / "m1.dcm")
    assert m2.dtype == m1.dtype == np.uint8 and m2.shape == (32, 24)
    assert m2[10, 6] == 255 and m2[20, 20] == 0   # MONOCHROME2: high value = bright
    assert m1[10, 6] == 0 and m1[20, 20] == 255   # MONOCHROME1: high value = dark
    np.testing.assert_array_equal(m1.astype(int), 255 - m2.astype(int))
    if bits == 8:
        assert m2[0, 0] == hi // 2  # 8-bit data kept verbatim


def test_dicom_without_decoder_plugin_gives_clear_error(tmp_path):
    pytest.importorskip("pydicom")
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLosslessSV1
    ds = _dicom(tmp_path / "plain.dcm", np.zeros((8, 8), np.uint16), "MONOCHROME2", 12)
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.PixelData = encapsulate([b"\xff\xd8garbage\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "jpegll.dcm", enforce_file_format=True)
    with pytest.raises(DataError, match="jpegll.dcm.*(install|corrupt)"):
        cxr.load_image(tmp_path / "jpegll.dcm")


# ---------------------------------------------------------------- resize

def test_squash_and_pad(tmp_path):
    img = np.full((100, 50), 200, np.uint8)  # tall, bright
    sq = cxr.resize(img, 64, "squash")
    assert sq.shape == (64, 64) and sq.dtype == np.uint8 and np.all(sq == 200)
    pd_ = cxr.resize(img, 64, "pad")
    assert pd_.shape == (64, 64)
    assert np.all(pd_[:, :12] == 0) and np.all(pd_[:, -12:] == 0)  # zero bars left/right (aspect kept)
    assert np.all(pd_[:, 20:44] == 200)
    with pytest.raises(ValueError):
        cxr.resize(img, 64, "crop")


@pytest.mark.realdata
def test_preprocess_image_real(realdata):
    p = sorted((realdata / "nih_chestxray14/images").glob("*.png"))[0]
    out = cxr.preprocess_image(p, 256, "squash")
    assert out.shape == (256, 256) and out.dtype == np.uint8
    # antialiased downscale ~ block mean of the 4x4 neighbourhoods
    block = np.asarray(Image.open(p), np.float64).reshape(256, 4, 256, 4).mean(axis=(1, 3))
    assert np.abs(out.astype(float) - block)[8:-8, 8:-8].mean() < 3


# ---------------------------------------------------------------- transforms

def test_train_transform_shape_dtype_and_determinism():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (256, 256), dtype=np.uint8)
    t = cxr.train_transform(224, 256)
    a = t(img, generator=torch.Generator().manual_seed(7))
    b = t(img, generator=torch.Generator().manual_seed(7))
    c = t(img, generator=torch.Generator().manual_seed(8))
    assert a.shape == (3, 224, 224) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[0], a[1]) and torch.equal(a[0], a[2])
    torch.manual_seed(5)
    d = t(img)
    torch.manual_seed(5)
    assert torch.equal(d, t(img))
    ro = img.copy()
    ro.setflags(write=False)  # read-only arrays (memmaps) are accepted
    assert t(ro, generator=torch.Generator().manual_seed(7)).shape == (3, 224, 224)


def test_eval_transform_values():
    e = cxr.eval_transform(224)
    out = e(np.full((256, 256), 255, np.uint8))
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.full((3, 224, 224), (1 - cxr.CXR_MEAN) / cxr.CXR_STD))
    x = np.random.default_rng(1).integers(0, 255, (256, 256), dtype=np.uint8)
    assert torch.equal(e(x), e(x))
