"""Tiny randomly initialised image-to-text models for tests (no downloads): BLIP, vit-gpt2
and Florence-2."""

import json
from pathlib import Path

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
WORDS = ["a", "the", "cat", "dog", "on", "in", "red", "blue", "photo", "of", "sitting", "grass"]


def build_tiny_blip(directory: Path) -> Path:
    """Save a tiny BLIP captioning model and its processor to `directory`."""
    import torch
    from transformers import (  # type: ignore[attr-defined]  # BertTokenizerFast: alias in 5.x
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    directory.mkdir(parents=True, exist_ok=True)
    vocab = SPECIAL_TOKENS + WORDS
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    # from_pretrained reads vocab.txt on transformers 4.x and 5.x alike (the constructor's
    # argument was renamed from vocab_file to vocab in 5.0).
    tokenizer = BertTokenizerFast.from_pretrained(directory, bos_token="[DEC]")
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            max_position_embeddings=64,
            initializer_range=0.2,
            bos_token_id=5,
            pad_token_id=0,
            sep_token_id=3,
            eos_token_id=3,
        ),
        vision_config=dict(
            hidden_size=32,
            image_size=32,
            patch_size=8,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            initializer_range=0.5,
        ),
        projection_dim=32,
    )
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config).eval()
    model.save_pretrained(directory)
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def build_tiny_vit_gpt2(directory: Path) -> Path:
    """Save a tiny ViT encoder + GPT-2 decoder (vit-gpt2 style) with its processor parts."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        GPT2Config,
        PreTrainedTokenizerFast,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    directory.mkdir(parents=True, exist_ok=True)
    vocab = {token: index for index, token in enumerate(["<pad>", "<s>", "</s>", "<unk>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    encoder = ViTConfig(
        hidden_size=32,
        image_size=32,
        patch_size=8,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        initializer_range=0.5,
    )
    decoder = GPT2Config(
        vocab_size=len(vocab),
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=64,
        initializer_range=0.2,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = 1
    config.pad_token_id = 0
    config.eos_token_id = 2
    torch.manual_seed(0)
    model = VisionEncoderDecoderModel(config=config).eval()
    model.generation_config.decoder_start_token_id = 1
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 2
    model.save_pretrained(directory)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


FLORENCE_WORDS = [
    *["what", "does", "the", "image", "describe", "?", "in", "detail", "is", "shown", "text"],
    *["a", "cat", "dog", "red", "blue", "sign", "open", "shop", "on", "grass"],
]


def build_tiny_florence2(directory: Path, image_size: int = 32) -> Path:
    """Save a tiny Florence-2 (a DaViT-style vision tower and a BART encoder-decoder, as
    transformers 5 builds it natively) with its processor to `directory`. The processor's
    `image_seq_length` is the vision tower's token count: (side / stride)² + 1 pooled."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (  # type: ignore[attr-defined]
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
        PreTrainedTokenizerFast,
    )

    directory.mkdir(parents=True, exist_ok=True)
    special = ["<s>", "<pad>", "</s>", "<unk>", "<image>"]
    vocab = {token: index for index, token in enumerate(special + FLORENCE_WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
    )
    side = {"height": image_size, "width": image_size}
    image_processor = CLIPImageProcessor(size=side, crop_size=side, do_center_crop=False)
    image_processor.image_seq_length = (image_size // 4) ** 2 + 1
    config = Florence2Config(
        text_config=dict(
            model_type="bart",
            vocab_size=len(vocab),
            max_position_embeddings=1024,
            encoder_layers=1,
            encoder_ffn_dim=16,
            encoder_attention_heads=1,
            decoder_layers=1,
            decoder_ffn_dim=16,
            decoder_attention_heads=1,
            d_model=16,
            bos_token_id=0,
            pad_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=2,
            forced_bos_token_id=0,
            init_std=1.0,  # random weights that say a few words before they stop
        ),
        vision_config=dict(
            depths=[1],
            patch_size=[7],
            patch_stride=[4],
            patch_padding=[3],
            patch_prenorm=[False],
            embed_dim=[16],
            num_heads=[1],
            num_groups=[1],
            window_size=12,
            projection_dim=16,
        ),
        image_token_id=vocab["<image>"],
    )
    torch.manual_seed(0)
    Florence2ForConditionalGeneration(config).eval().save_pretrained(directory)
    processor = Florence2Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        post_processor_config={"pure_text": {}},
    )
    processor.save_pretrained(directory)
    return directory


if __name__ == "__main__":  # quick manual check: python -m tests.tiny_blip /tmp/out
    import sys

    root = Path(sys.argv[1])
    print(build_tiny_blip(root / "blip"), build_tiny_vit_gpt2(root / "vit-gpt2"))
    print(json.dumps(sorted(p.name for p in (root / "vit-gpt2").iterdir())))
