"""Training: the Accelerate GAN trainer, its configuration and data, GAN losses,
regularizers, Adam settings for lazy regularization, the generator's moving average, style
mixing, and fine-tuning (start from trained weights, FreezeD).

``from pixelfold.training import TrainConfig, train, discriminator_loss, r1_penalty, EMA``.
"""

from .config import TrainConfig, build_arg_parser, parse_args
from .data import (
    DatasetClasses,
    ImageDataset,
    IterableImageDataset,
    dataset_classes,
    digits_dataset,
    load_image_dataset,
    preprocess_image,
)
from .finetune import (
    InitWeights,
    apply_init_weights,
    check_init_weights,
    freeze_discriminator,
    load_init_weights,
)
from .losses import (
    EMA,
    discriminator_loss,
    ema_beta,
    generator_loss,
    lazy_adam_params,
    lazy_r1_loss,
    path_length_penalty,
    r1_penalty,
    style_mixing_ws,
)
from .trainer import GANTrainer, NonFiniteLossError, TrainerState, save_image_grid, train

__all__ = [
    "EMA",
    "DatasetClasses",
    "GANTrainer",
    "ImageDataset",
    "InitWeights",
    "IterableImageDataset",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainerState",
    "build_arg_parser",
    "dataset_classes",
    "digits_dataset",
    "load_image_dataset",
    "parse_args",
    "preprocess_image",
    "save_image_grid",
    "train",
    "discriminator_loss",
    "ema_beta",
    "generator_loss",
    "lazy_adam_params",
    "lazy_r1_loss",
    "path_length_penalty",
    "r1_penalty",
    "style_mixing_ws",
    "apply_init_weights",
    "check_init_weights",
    "freeze_discriminator",
    "load_init_weights",
]
