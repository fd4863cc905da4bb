"""tools.ceiling on tiny exported models: the optimised latent never reconstructs worse than
its starting point, every figure is finite."""
import json
import math
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.mark.skipif(not (SHARED / "kodak").is_dir() or not (SHARED / "video").is_dir(),
                    reason="needs ../shared/datasets (Kodak, the clips)")
def test_ceiling_tiny(tmp_path):
    import codec.image
    import codec.video
    from models.image import ImageModel
    from models.video import VideoModel
    from tools.ceiling import main

    torch.manual_seed(0)
    codec.image.export_weights(ImageModel("tiny"), tmp_path / "i.safetensors")
    codec.video.export_weights(VideoModel("tiny"), tmp_path / "v.safetensors")
    out = tmp_path / "c.json"
    main(["--image-weights", str(tmp_path / "i.safetensors"), "--video-weights",
          str(tmp_path / "v.safetensors"), "--iters", "5", "--out", str(out)])
    res = json.loads(out.read_text())
    assert len(res["image"]["rows"]) == 2 and len(res["video"]["rows"]) == 4
    for r in res["image"]["rows"]:
        assert r["ceiling_psnr"] >= r["unquantized_latent_psnr"] - 1e-3
    assert len(res["image"]["stage_ceiling_psnr"]) == 3
    assert all(math.isfinite(v) for v in res["image"]["stage_ceiling_psnr"].values())
    for r in res["video"]["rows"]:
        assert r["ceiling_psnr"] >= r["zero_latent_psnr"] - 1e-3
    assert all(math.isfinite(v) for part in ("image", "video") for r in res[part]["rows"]
               for v in r.values() if isinstance(v, float))
