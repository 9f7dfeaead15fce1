"""The one typed schema of ``params.yaml``: a class per section, a field per key.

``params.yaml`` is the only place a parameter's value lives: no field here has a
default. :func:`load_params` reads the file with the YAML 1.2 rules DVC uses
(ruamel.yaml: ``lr: 1e-3`` is the number 0.001, as ``dvc exp show`` shows it)
and validates it in pydantic's strict mode: no string for a number or a bool, no
float for an int, no unknown key (the error suggests the closest known one), and
each range, choice and cross-field rule below. Every failure is one line naming
the key, the value given and what is allowed (:class:`ParamsError`).
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from cvae.core.errors import UsageError

SIZES = (64, 128, 256)  # COCO image sides (3 / 4 / 5 conv blocks)
SEED_MAX = 2**32 - 1  # every RNG the project seeds accepts [0, 2**32 - 1]
# The devices cvae.core.device.resolve_device accepts (the same pattern there).
DEVICE_RE = re.compile(r"auto|cpu|cuda(?::(?:0|[1-9][0-9]*))?")
MAX_TEMPERATURE = 2.0  # highest sampling temperature of a fitted prior
FID_PROTOCOL_N = 10_000  # Fashion-MNIST FID protocol: samples per set


class ParamsError(UsageError):
    """params.yaml is missing, unreadable or breaks the schema (one line)."""


def _device(value: str) -> str:
    if not DEVICE_RE.fullmatch(value):
        raise ValueError("use auto, cpu, cuda or cuda:N")
    return value


def _size(value: int) -> int:
    if value not in SIZES:
        raise ValueError(f"use one of {', '.join(map(str, SIZES))}")
    return value


def _nonblank(value: str) -> str:
    if not value.strip():
        raise ValueError("use a non-empty string")
    return value


Pos = Annotated[int, Field(ge=1)]
NonNeg = Annotated[int, Field(ge=0)]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
Device = Annotated[str, AfterValidator(_device)]
Text = Annotated[str, AfterValidator(_nonblank)]
Conditioning = Literal["concat", "add"]
# The Fashion-MNIST models, one section each under fashion.model (the order of
# cvae.models.FASHION_ARCHS; tests/repo checks they agree).
FashionArch = Literal["fc", "conv", "gmm", "vaegan"]


class Section(BaseModel):
    """Strict, closed and immutable: the base of every section."""

    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, allow_inf_nan=False
    )


# ---------------------------------------------------------------- fashion ----
class FashionData(Section):
    root: Text  # folder of the Fashion-MNIST IDX files
    train_limit: Pos | None  # null = all 60,000 training images
    test_limit: Pos | None  # null = all 10,000 test images
    seed: Seed  # which images a limit keeps


class FCModel(Section):
    hidden_dims: Annotated[list[Pos], Field(min_length=1)]  # encoder widths
    latent_dim: Pos  # size of z
    conditioning: Conditioning  # how the label joins features and z
    embed_dim: Pos  # label embedding size (concat only)


class ConvModel(Section):
    channels: Annotated[list[Pos], Field(min_length=3, max_length=3)]  # 3 conv widths
    latent_dim: Pos
    conditioning: Conditioning
    embed_dim: Pos


class GMMModel(Section):
    """The conv CVAE sampled from a per-class Gaussian mixture fitted to the
    training posteriors (``cvae.models.gmm``), with its own schedule."""

    channels: Annotated[list[Pos], Field(min_length=3, max_length=3)]  # 3 conv widths
    latent_dim: Pos
    conditioning: Conditioning
    embed_dim: Pos
    components: Pos  # Gaussian components per class in the fitted prior
    temperature: Annotated[
        float, Field(gt=0, le=MAX_TEMPERATURE)
    ]  # sampling: z = mean + t * L eps
    epochs: Pos  # replaces fashion.train.epochs for this model
    beta: Annotated[float, Field(gt=0)]  # replaces fashion.train.beta (KL weight)
    weight_decay: Annotated[float, Field(ge=0)]  # replaces fashion.train.weight_decay


class Adversarial(Section):
    """The adversarial reconstruction term (``cvae.training.adversarial``)."""

    # adv / recon gradient norm at the decoder's output layer (0: the critic
    # still trains but no longer reaches the decoder; an ablation setting)
    weight: Annotated[float, Field(ge=0)]
    start_epoch: NonNeg  # epochs trained as a plain VAE before the critic joins
    channels: Annotated[list[Pos], Field(min_length=3, max_length=3)]  # critic widths
    lr: Annotated[float, Field(gt=0)]  # the critic's Adam learning rate
    # the critic also judges decodes of latents drawn from each class's Gaussian
    # of the previous epoch's posterior means (Larsen et al. 2016)
    prior_samples: bool
    # the critic also learns to reject real images under a wrong label (Reed et
    # al. 2016's matching-aware discriminator): none, a label drawn uniformly
    # from the other classes, or one drawn towards those the critic scores
    # highest for the image (hard negatives)
    mismatch: Literal["none", "uniform", "hard"]


class VAEGANModel(GMMModel):
    """``gmm``'s encoder, schedule and fitted prior with a residual decoder
    trained against a critic (``cvae.models.vaegan``)."""

    # residual decoder widths at 7, 14 and 28 px
    decoder_channels: Annotated[list[Pos], Field(min_length=3, max_length=3)]
    adversarial: Adversarial  # the critic and its term
    # the model file holds an exponential moving average of the weights with
    # this decay (a horizon of about 1 / (1 - ema) steps); 0: the last step's
    ema: Annotated[float, Field(ge=0, lt=1)]

    @model_validator(mode="after")
    def _critic_starts(self) -> VAEGANModel:
        if self.adversarial.start_epoch >= self.epochs:
            raise ValueError(
                f"adversarial.start_epoch {self.adversarial.start_epoch} >= epochs "
                f"{self.epochs}: the critic would never train; lower it"
            )
        return self


# Fields of a model section that replace those of fashion.train for that model.
TRAIN_OVERRIDES = ("epochs", "beta", "weight_decay")
# Fields of a model section that configure its training loop, not its network.
TRAINING_FIELDS = ("adversarial", "ema")


class FashionModels(Section):
    fc: FCModel
    conv: ConvModel
    gmm: GMMModel
    vaegan: VAEGANModel


class TrainParams(Section):
    epochs: Pos  # passes over the training set
    batch_size: Pos  # images per step (per rank under torchrun)
    lr: Annotated[float, Field(gt=0)]  # Adam learning rate
    weight_decay: Annotated[float, Field(ge=0)]  # Adam (L2) weight decay
    beta: Annotated[float, Field(ge=0)]  # weight of the KL term
    recon: Literal["bce", "mse"]  # reconstruction term
    seed: Seed  # data order, init and reparameterisation noise
    device: Device  # auto | cpu | cuda | cuda:N
    amp: bool  # bf16 autocast on CUDA (no effect on CPU)


class FashionEvaluate(Section):
    batch_size: Pos
    grid_n: Pos  # images per row in the grids
    seed: Seed  # generation noise
    device: Device
    cond_n_per_class: Pos  # generations per class scored by the classifier


class ClassifierParams(Section):
    channels: Annotated[list[Pos], Field(min_length=1, max_length=3)]  # block widths
    convs_per_block: Pos  # conv layers before each pooling
    hidden: NonNeg  # hidden linear units; 0 = none
    dropout: Annotated[float, Field(ge=0, lt=1)]  # before each linear layer
    flip: bool  # random left-right mirroring while training
    shift: Annotated[int, Field(ge=0, le=8)]  # random translation, pixels
    epochs: Pos
    batch_size: Pos
    lr: Annotated[float, Field(gt=0)]  # Adam; the peak of a onecycle schedule
    weight_decay: Annotated[float, Field(ge=0)]  # Adam (L2) weight decay
    schedule: Literal["constant", "onecycle"]  # learning rate over the steps
    seed: Seed
    device: Device


class TsneParams(Section):
    n_points: Annotated[int, Field(ge=3)]  # test points embedded
    vae_epochs: Pos  # epochs of the plain VAE
    seed: Seed
    perplexity: Annotated[float, Field(gt=0)]
    device: Device

    @model_validator(mode="after")
    def _perplexity_below_points(self) -> TsneParams:
        if self.perplexity >= self.n_points:
            raise ValueError(
                f"perplexity {self.perplexity} must be below n_points "
                f"{self.n_points} (t-SNE needs more points than neighbours)"
            )
        return self


class FidParams(Section):
    samples: NonNeg  # 0 = off; 10000 = the protocol
    batch_size: Pos  # Inception batch
    seed: Seed  # generation noise of the FID set
    device: Device

    @model_validator(mode="after")
    def _off_or_enough(self) -> FidParams:
        if self.samples == 1:
            raise ValueError("samples 1: use 0 (off) or >= 2 (10000 = the protocol)")
        return self


def _models(value: list[Any]) -> list[Any]:
    if not value:
        raise ValueError(f"list one or more of {', '.join(get_args(FashionArch))}")
    seen = [v for i, v in enumerate(value) if v in value[:i]]
    if seen:
        raise ValueError(f"{seen[0]!r} is listed twice: name each model once")
    return value


class Fashion(Section):
    # the models `dvc repro` trains and evaluates (fashion_train@<arch>,
    # fashion_evaluate@<arch>); the others keep their sections for experiments
    archs: Annotated[list[FashionArch], AfterValidator(_models)]
    data: FashionData
    model: FashionModels
    train: TrainParams
    evaluate: FashionEvaluate
    classifier: ClassifierParams
    tsne: TsneParams
    fid: FidParams

    @model_validator(mode="after")
    def _fid_protocol(self) -> Fashion:
        full = self.data.train_limit is None and self.data.test_limit is None
        if full and 0 < self.fid.samples < FID_PROTOCOL_N:
            raise ValueError(
                f"fid.samples {self.fid.samples} is below the protocol's "
                f"{FID_PROTOCOL_N} on the full data set: use 0 (off) or >= "
                f"{FID_PROTOCOL_N}"
            )
        return self


# ------------------------------------------------------------------- coco ----
class CocoData(Section):
    images: Text  # image folder (train2017/, val2017/ or the sample)
    captions: Text  # COCO captions_*.json


class FilterParams(Section):
    keywords: dict[Text, Annotated[list[Text], Field(min_length=1)]]  # name -> words
    subsets: Annotated[list[Text], Field(min_length=1)]  # keyword sets kept
    val_fraction: Annotated[float, Field(gt=0, lt=1)]  # share held out
    seed: Seed  # salt of the split hash

    @model_validator(mode="after")
    def _subsets_known(self) -> FilterParams:
        for name in self.subsets:
            if name not in self.keywords:
                raise ValueError(
                    f"subsets names {name!r}, not a set of filter.keywords: use "
                    f"some of {sorted(self.keywords)}"
                    f"{did_you_mean(name, self.keywords)}"
                )
        return self


class ShardParams(Section):
    shard_size: Pos  # samples per tar
    image_format: Literal["png", "jpg"]
    workers: NonNeg  # decoding processes, 0 = one per CPU


class EmbedParams(Section):
    model: Text  # open_clip config name
    pretrained: Text  # none = random init | local checkpoint file | hub tag
    batch_size: Pos
    device: Device
    seed: Seed  # seed of the random init
    normalize: bool  # unit-normalise each sentence vector before averaging
    num_workers: NonNeg  # image decoding/preprocessing processes beside CLIP


class CocoModel(Section):
    base_channels: Pos  # width of the first block, doubled per block
    latent_dim: Pos
    embed_dim: Pos  # projected condition size (concat only)
    logvar_max: Annotated[float, Field(ge=-5, le=10)] | None  # None: unbounded


class CocoTrain(TrainParams):
    # memory: decoded once in RAM | stream: webdataset | auto: memory when the
    # training pixels fit memory_budget_mib, else stream
    loader: Literal["memory", "stream", "auto"]
    memory_budget_mib: Pos  # auto: the most the in-memory training set may take
    # stream: decoding processes per rank; auto = none on CPU, where a training
    # step costs ~50 decodes and a worker only adds a process and its shuffle
    # buffer, and min(4, CPUs per rank) on CUDA (cvae.data.stream.decode_workers)
    num_workers: Literal["auto"] | NonNeg


class CocoEvaluate(Section):
    batch_size: Pos
    grid_n: Pos
    score_samples: Pos  # held-out images (at most) behind FID and CLIP score
    seed: Seed
    device: Device
    prompts: Annotated[list[Text], Field(min_length=1)]  # a generation row each


class Coco(Section):
    model: CocoModel
    train: CocoTrain
    evaluate: CocoEvaluate


# ------------------------------------------------------------------- root ----
class Params(Section):
    cpu_threads: Pos  # torch CPU threads: reductions split by thread (bytes differ)
    fashion: Fashion
    size: Annotated[int, AfterValidator(_size)]  # COCO image side
    conditioning: Conditioning  # COCO: how the CLIP vector joins features and z
    condition_on: Literal["text", "image"]  # caption or CLIP image embeddings
    coco_data: CocoData
    filter: FilterParams
    shard: ShardParams
    embed: EmbedParams
    coco: Coco


def did_you_mean(word: str, known: Any, prefix: str = "") -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    if not close:
        return ""
    return f": did you mean {prefix + '.' if prefix else ''}{close[0]}?"
