"""DeepFace's internals facestream relies on are where facestream/deepface_internals.py
read them, and no other module reaches for them.

A DeepFace upgrade that moves, renames or reshapes one of them fails here, naming the
internal and the DeepFace version the adapter was read from, rather than deep inside a
model build or a detection.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from facestream import deepface_internals
from facestream.deepface_internals import (
    INTERNALS,
    MODEL_BUILDERS,
    READ_FROM_DEEPFACE,
    Internal,
)
from facestream.models import ACTION_MODELS

ROOT = Path(__file__).resolve().parent.parent
ADAPTER = ROOT / "facestream" / "deepface_internals.py"
# Production packages: only the adapter may reach DeepFace's internals. bench/ and tests/
# may use more of DeepFace (the benchmark's peer is DeepFace's own server).
PACKAGES = ("facestream", "dataflow", "grpc_server", "di", "apps")
MODULE_PATH = re.compile(r"deepface(\.\w+)+")


def named(internal: Internal) -> str:
    return f"{internal.module}.{internal.name}"


def moved(what: str) -> str:
    return (
        f"DeepFace internal {what}. facestream/deepface_internals.py was read from deepface "
        f"{READ_FROM_DEEPFACE}; installed is deepface {version('deepface')}. Re-read this "
        "internal in the installed release and update the adapter (and READ_FROM_DEEPFACE)."
    )


def test_the_adapter_was_read_from_the_pinned_deepface():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [pin for pin in project["dependencies"] if pin.startswith("deepface==")]
    assert pins == [f"deepface=={READ_FROM_DEEPFACE}"], (
        f"pyproject.toml pins {pins}, but facestream/deepface_internals.py was read from "
        f"deepface {READ_FROM_DEEPFACE}: re-read its INTERNALS in the pinned release first."
    )


@pytest.mark.parametrize("internal", INTERNALS, ids=named)
def test_each_internal_is_where_the_adapter_read_it(internal):
    try:
        target = deepface_internals.resolve(internal)
    except (ImportError, AttributeError) as error:
        pytest.fail(moved(f"{named(internal)} is gone ({error})"))
    if internal.parameters is None:
        return  # a value: the label and weight-source tests below read the values
    assert callable(target), moved(f"{named(internal)} is no longer callable: {target!r}")
    signature = inspect.signature(target)
    missing = [name for name in internal.parameters if name not in signature.parameters]
    assert not missing, moved(
        f"{named(internal)} has no parameter {missing}: its signature is now {signature}"
    )


def test_the_labels_match_the_models_outputs():
    # The models' output sizes: 2 genders, 7 emotions, 6 races, in DeepFace's order.
    labels = deepface_internals.attribute_labels()
    sizes = {action: len(names) for action, names in labels.items()}
    assert sizes == {"gender": 2, "emotion": 7, "race": 6}, moved(
        f"deepface.models.demography.DemographyUtils labels changed: {labels}"
    )
    assert labels["gender"] == ["Woman", "Man"], moved(
        f"deepface.models.demography.DemographyUtils.GENDER_LABELS is {labels['gender']}"
    )


def test_the_weight_sources_name_the_files_facestream_checks():
    for spec in ACTION_MODELS.values():
        sources = deepface_internals.weight_sources(spec.model_name)
        assert sources, moved(f"{MODEL_BUILDERS[spec.model_name]}.WEIGHTS_URL is empty")
        wrong = [url for url in sources if not url.endswith("/" + spec.weight_file)]
        assert not wrong, moved(
            f"{MODEL_BUILDERS[spec.model_name]}.WEIGHTS_URL no longer downloads "
            f"{spec.weight_file}: {wrong}"
        )


def test_deepface_builds_the_model_classes_the_adapter_reads():
    # build_architecture and emotion_grey_face read MODEL_BUILDERS' modules; the
    # model objects facestream runs must come from those very modules.
    for model_name, module in MODEL_BUILDERS.items():
        built = deepface_internals.model_class(model_name)
        assert built.__module__ == module, moved(
            f"deepface.modules.modeling builds {model_name} from {built.__module__}, "
            f"not from {module}"
        )


def test_the_builders_load_weights_through_the_module_the_adapter_patches():
    # build_architecture swaps functions on deepface.commons.weight_utils; a builder that
    # bound them at import would fetch and load weights despite the swap.
    builders = {
        module_name: deepface_internals.resolve(Internal(module_name, "load_model"))
        for module_name in MODEL_BUILDERS.values()
    }
    weight_utils = importlib.import_module("deepface.commons.weight_utils")
    for module_name, builder in builders.items():
        own = builder.__globals__.get("weight_utils")
        assert own is weight_utils, moved(
            f"{module_name}.load_model no longer reaches weights through "
            f"deepface.commons.weight_utils (it sees {own!r})"
        )


def test_build_architecture_neither_fetches_nor_loads_weights_and_restores_deepface(
    monkeypatch,
):
    deepface_internals.import_deepface()
    weight_utils = importlib.import_module("deepface.commons.weight_utils")

    def download(file_name, source_url, compress_type=None):
        raise AssertionError(f"build_architecture fetched {file_name}")

    def load(model, weight_file):
        raise AssertionError(f"build_architecture loaded {weight_file}")

    monkeypatch.setattr(weight_utils, "download_weights_if_necessary", download)
    monkeypatch.setattr(weight_utils, "load_model_weights", load)
    model = deepface_internals.build_architecture("Emotion")
    assert tuple(model.input_shape) == (None, 48, 48, 1)
    assert tuple(model.output_shape) == (
        None,
        len(deepface_internals.attribute_labels()["emotion"]),
    )
    assert weight_utils.download_weights_if_necessary is download, "download not restored"
    assert weight_utils.load_model_weights is load, "weight loading not restored"


def test_the_emotion_grey_face_is_deepfaces_own_preprocessing():
    # facestream writes DeepFace's emotion preprocessing out (no model object, no
    # TensorFlow in a process whose emotion model is converted); it must stay DeepFace's.
    emotion_class = deepface_internals.model_class("Emotion")
    rng = np.random.default_rng(7)
    for face in (
        rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        rng.random((224, 224, 3)).astype(np.float32),  # a model input: divided by 255
    ):
        ours = deepface_internals.emotion_grey_face(face)
        theirs = emotion_class._preprocess_image(None, img=face)
        assert ours.shape == (48, 48) and ours.dtype == theirs.dtype
        assert np.array_equal(ours, theirs), moved(f"{emotion_class.__name__}._preprocess_image")


@pytest.mark.model_process
def test_vgg_faces_architecture_is_the_whole_network_its_weight_file_holds():
    # vgg_face_weights.h5 is loaded into VGGFace.base_model() (fc8, 2622 classes, included);
    # DeepFace's descriptor then keeps up to fc7, the embedding.
    model = deepface_internals.build_architecture("VGG-Face")
    assert tuple(model.output_shape) == (None, 2622), moved(
        f"deepface.models.facial_recognition.tf.VGGFace.base_model() outputs {model.output_shape}"
    )
    unit = deepface_internals.l2_normalize(np.array([3.0, 4.0]))
    np.testing.assert_allclose(unit, [0.6, 0.8])


def internal_use(node: ast.AST) -> str | None:
    """What `node` reaches of DeepFace beyond `from deepface import DeepFace`,
    `import deepface` and `deepface.__version__`; None if nothing."""
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [alias.name for alias in node.names]
        if node.module.startswith("deepface.") or (
            node.module == "deepface" and names != ["DeepFace"]
        ):
            return f"from {node.module} import {', '.join(names)}"
    elif isinstance(node, ast.Import):
        modules = [alias.name for alias in node.names if alias.name.startswith("deepface.")]
        if modules:
            return f"import {', '.join(modules)}"
    elif (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "deepface"
        and node.attr != "__version__"
    ):
        return f"deepface.{node.attr}"
    elif (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and MODULE_PATH.fullmatch(node.value)
    ):
        # A module path in a string, as importlib.import_module("deepface.models...") takes.
        return repr(node.value)
    return None


def deepface_internal_uses(path: Path) -> list[str]:
    """Each place in `path` that reaches a DeepFace internal, as "file:line: what"."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.relative_to(ROOT)}:{node.lineno}: {use}"
        for node in ast.walk(tree)
        if (use := internal_use(node)) is not None
    ]


def test_only_the_adapter_reaches_deepface_internals():
    sources = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))
    assert ADAPTER in sources
    assert deepface_internal_uses(ADAPTER), "the check sees nothing, even in the adapter"
    outside = [use for path in sources if path != ADAPTER for use in deepface_internal_uses(path)]
    assert not outside, (
        "DeepFace internals reached outside facestream/deepface_internals.py; add a "
        f"function there and call it instead: {outside}"
    )
