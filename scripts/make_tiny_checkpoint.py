"""Save a tiny LLaMA checkpoint with random weights and an offline byte-level tokenizer.

Usage: python scripts/make_tiny_checkpoint.py OUT_DIR
Needs transformers, tokenizers and torch (the vLLM environment has them). Nothing is downloaded:
the tokenizer is built here (256 byte tokens + <unk>, <s>, </s>), the weights are random.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import BPE
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    vocab = {(chr(i) if 33 <= i < 127 else f"<0x{i:02X}>"): i for i in range(256)}
    vocab.update({"<unk>": 256, "<s>": 257, "</s>": 258})
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(BPE(vocab=vocab, merges=[], unk_token="<unk>",
                                       byte_fallback=True)),
        bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    tok.save_pretrained(out)
    cfg = LlamaConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=32, intermediate_size=256, vocab_size=259,
                      max_position_embeddings=2048, tie_word_embeddings=False, bos_token_id=257,
                      eos_token_id=258)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(out)
    print(f"tiny checkpoint in {out}")


if __name__ == "__main__":
    main()
