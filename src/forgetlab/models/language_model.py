"""One wrapper over seq2seq and decoder-only models, so the rest of forgetlab never asks which it has.

It owns the only things that differ between the two: how a prompt/completion pair becomes inputs and
labels, how a batch is padded, how per-token losses are read off the logits, and how greedy generation
is called and decoded. It also owns what a pretrained checkpoint expects of its inputs: a leading BOS
where the tokenizer adds one (Llama family), the chat template of an instruction model (a switch), EOS
after every answer, and inputs cut to `max_length` tokens, with each cut example reported (`truncated`).

Cutting keeps what the model needs most: the answer (the loss falls on it) and the end of the prompt
(where the answer starts); a leading BOS stays in place. Held-out text (an empty prompt) is the text
alone after BOS (or the separator when the model has no BOS), never wrapped in a chat template.

A conversation prompt (chat tasks, forgetlab.utils.conversation) is rendered by the model's own chat
template; the scored answer is the template's last assistant turn, up to its first stop token (EOS or an
end-of-turn id of the generation config; EOS is added when the template writes none). For training,
`train_on` may put the loss on every assistant turn (or every token) too; scoring always takes the last.

Training batches may be packed (`packing`, forgetlab.training.packing): several examples share a row,
their position ids restart at each example and the model's attention keeps them apart; `label_logits`
and the per-example losses read such batches as they read padded ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from forgetlab.models.chat import ChatTemplateError, chat_pieces
from forgetlab.models.truncation import TruncationLog
from forgetlab.utils.conversation import read_conversation

ModelKind = Literal["seq2seq", "causal"]
IGNORE_INDEX = -100


@dataclass
class LanguageModel:
    """A model, its tokenizer and its kind. `model` may be replaced by a peft wrapper."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    kind: ModelKind
    name: str = "model"
    separator: str = ""  # causal only: text placed between prompt and completion
    max_length: int = 256
    add_bos: bool = False  # start every input with the tokenizer's BOS (what Llama tokenizers do themselves)
    chat_template: bool = False  # causal only: render prompts with the tokenizer's chat template
    max_new_tokens: int = 256  # cap of a task's generation length (its longest reference + a margin)
    packing: str = "false"  # training batches packed padding-free: auto | true | false (training/packing.py)
    autocast: torch.dtype | None = None  # scoring under torch.autocast (bf16 on GPU, as training)
    truncation: TruncationLog = field(default_factory=TruncationLog, repr=False)
    # examples each process has scored so far, by rank (the gathers on rank 0): shows scoring was shared
    scored_per_process: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._configure()

    def replace_model(self, model: PreTrainedModel) -> None:
        """Swap in new weights (a loaded checkpoint, a peft wrapper) and re-apply generation settings."""
        self.model = model
        self._configure()

    def _configure(self) -> None:
        if self.kind not in ("seq2seq", "causal"):
            raise ValueError(f"model kind must be 'seq2seq' or 'causal', got {self.kind!r}")
        tok = self.tokenizer
        if tok.eos_token_id is None:
            raise ValueError(f"tokenizer of {self.name!r} has no eos token; set one before training")
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        if self.add_bos and tok.bos_token_id is None:
            raise ValueError(f"model.build.add_bos: the tokenizer of {self.name!r} has no bos token; set add_bos "
                             "to false or auto")
        if self.chat_template and (self.kind != "causal" or not getattr(tok, "chat_template", None)):
            raise ValueError(f"model.build.chat_template=true but {self.name!r} has no chat template"
                             + ("" if self.kind == "causal" else " (only causal models use one)")
                             + "; set model.build.chat_template=false")
        gen = self.model.generation_config
        gen.pad_token_id = tok.pad_token_id
        # the tokenizer's EOS ends every answer; an instruction model's own end-of-turn ids stop generation too
        own = gen.eos_token_id if isinstance(gen.eos_token_id, list) else []
        gen.eos_token_id = tok.eos_token_id if not own else list(dict.fromkeys([tok.eos_token_id, *own]))
        self._stop_ids = set(gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id])
        if self.kind == "seq2seq" and getattr(self.model.config, "decoder_start_token_id", None) is not None:
            gen.decoder_start_token_id = self.model.config.decoder_start_token_id
        self._sep_ids = self._ids(self.separator) if self.kind == "causal" else []

    # ------------------------------------------------------------------ encoding
    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _context(self, prompt: str) -> tuple[list[int], list[int]]:
        """(head, body) of the input before the answer: `head` (a leading BOS) is never cut, `body` is the
        rendered prompt (+ separator for causal models, + EOS for seq2seq encoders)."""
        tok = self.tokenizer
        conversation = read_conversation(prompt)
        if conversation is not None:
            head, body, _, _ = self._conversation(conversation[0], None, "last")
            return head, body
        if self.kind == "seq2seq":
            body = self._ids(prompt) + [tok.eos_token_id]
        elif not prompt:  # held-out text: the text follows BOS, or the separator if there is no BOS
            body = [] if self.add_bos else list(self._sep_ids)
        elif self.chat_template:
            text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True)
            body = self._ids(text)
        else:
            body = self._ids(prompt) + self._sep_ids
        return self._split_bos(body)

    def _split_bos(self, body: list[int]) -> tuple[list[int], list[int]]:
        bos = self.tokenizer.bos_token_id
        if body[:1] == [bos] and bos is not None:  # a chat template that writes BOS itself
            return [bos], body[1:]
        return ([bos] if self.add_bos else []), body

    def _conversation(self, messages: list[dict], answer: str | None,
                      train_on: str) -> tuple[list[int], list[int], list[int], list[int]]:
        """(head, body, body labels, answer ids) of a conversation rendered by the chat template; the body's
        labels are -100 except on the assistant turns `train_on` trains (`all`: every token)."""
        if self.kind != "causal":
            raise ChatTemplateError(f"model {self.name!r} is {self.kind}: chat conversations need a decoder-only "
                                    "model with a chat template")
        pieces = chat_pieces(self.tokenizer, messages, answer, self.name)
        last = pieces.pop() if answer is not None else None
        ids: list[int] = []
        labels: list[int] = []
        for text, assistant in pieces:
            piece = self._ids(text)
            ids += piece
            if train_on == "all":
                labels += piece
            else:
                trained = assistant and train_on == "all_assistant"
                labels += self._turn(piece)[1] if trained else [IGNORE_INDEX] * len(piece)
        head, body = self._split_bos(ids)
        body_labels = labels[len(ids) - len(body):]
        answer_ids = self._turn(self._ids(last[0]))[0] if last is not None else []
        if last is not None and (not answer_ids or answer_ids[-1] not in self._stop_ids):
            answer_ids.append(self.tokenizer.eos_token_id)  # a template that ends turns with no stop token
        return head, body, body_labels, answer_ids

    def _turn(self, piece: list[int]) -> tuple[list[int], list[int]]:
        """An assistant turn up to its first stop token, and its labels within the whole piece (what follows
        the stop, e.g. a newline before the next turn, is not trained)."""
        end = next((i + 1 for i, t in enumerate(piece) if t in self._stop_ids), len(piece))
        return piece[:end], piece[:end] + [IGNORE_INDEX] * (len(piece) - end)

    def _layout(self, prompt: str, completion: str, train: bool = False) -> tuple[list[int], list[int], bool]:
        """(input ids, labels, truncated) of one example within `max_length` tokens. `train`: labels as
        training takes them (a conversation's `train_on`), else the scored answer's only."""
        eos, limit = self.tokenizer.eos_token_id, self.max_length
        conversation = read_conversation(prompt)
        if conversation is not None:
            head, body, body_labels, answer = self._conversation(
                conversation[0], completion, conversation[1] if train else "last")
        else:
            (head, body), body_labels = self._context(prompt), None
            answer = self._ids(completion) + [eos]
        if self.kind == "seq2seq":
            cut = len(head) + len(body) > limit or len(answer) > limit
            return head + body[-max(limit - len(head), 1):], answer[:limit], cut
        body_labels = body_labels if body_labels is not None else [IGNORE_INDEX] * len(body)
        cut = len(head) + len(body) + len(answer) > limit
        if cut:  # the answer keeps what the prompt leaves (the prompt keeps its end, up to half the room)
            answer = answer[: max(limit - len(head) - min(len(body), max(limit // 2, 1)), 1)]
            room = limit - len(head) - len(answer)
            start = max(len(body) - room, 0) if room > 0 else len(body)
            body, body_labels = body[start:], body_labels[start:]
        return head + body + answer, [IGNORE_INDEX] * len(head) + body_labels + answer, cut

    def encode(self, prompt: str, completion: str, train: bool = False) -> dict[str, list[int]]:
        """Token ids and labels for one example; loss falls on completion + eos (a conversation trained with
        `train` and `train_on` set: on more of its turns). `truncated` says whether the example had to be
        cut to fit `max_length`."""
        ids, labels, cut = self._layout(prompt, completion, train)
        return {"input_ids": ids, "labels": labels, "truncated": cut}

    def encoding_key(self) -> dict:
        """Everything `encode` depends on: tokenised data cached under this key is valid for any model
        that shares it."""
        from datasets.fingerprint import Hasher

        return {"kind": self.kind, "max_length": self.max_length, "separator": self.separator,
                "add_bos": self.add_bos, "chat_template": self.chat_template, "tokenizer": Hasher.hash(self.tokenizer),
                "stop_ids": sorted(self._stop_ids)}  # where a conversation's trained turns end

    def encode_batch(self, batch: dict[str, list]) -> dict[str, list]:
        """`datasets.Dataset.map(batched=True)` function over prompt/completion columns (training data)."""
        out = [self.encode(p, c, train=True) for p, c in zip(batch["prompt"], batch["completion"])]
        return {k: [o[k] for o in out] for k in ("input_ids", "labels", "truncated")}

    def generation_input(self, prompt: str, max_new_tokens: int) -> tuple[list[int], bool]:
        """The ids greedy decoding starts from, and whether the prompt was cut: a causal model's prompt
        leaves room for `max_new_tokens` within `max_length`."""
        head, body = self._context(prompt)
        room = self.max_length - len(head) - (max_new_tokens if self.kind == "causal" else 0)
        room = max(room, 1)
        return head + body[-room:], len(body) > room

    def generation_length(self, references: list[str]) -> int:
        """New tokens to generate for answers like `references`: the longest in tokens + 5, at most
        `max_new_tokens` (5 = the margin the built-in tasks always had)."""
        longest = max((len(ids) for ids in self.tokenizer(list(references), add_special_tokens=False)["input_ids"]),
                      default=0)
        return max(1, min(self.max_new_tokens, longest + 5))

    def collate(self, features: list[dict]) -> dict[str, torch.Tensor]:
        """Right-pad a list of encoded examples into tensors (labels padded with -100). Rows are copied
        into one numpy array (a tensor per row would cost more than a tiny model's step on CPU)."""
        ids, lengths = _pad([f["input_ids"] for f in features], self.tokenizer.pad_token_id)
        mask = (torch.arange(ids.size(1)) < lengths[:, None]).long()
        labels, _ = _pad([f["labels"] for f in features], IGNORE_INDEX)
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if "task_id" in features[0]:
            batch["task_id"] = torch.tensor([f["task_id"] for f in features], dtype=torch.long)
        return batch

    # ------------------------------------------------------------------ loss
    def token_losses(self, batch: dict[str, torch.Tensor],
                     encoder_outputs: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example summed negative log-likelihood of the labels, and the number of label tokens.
        A seq2seq model may be handed its `encoder_outputs` for `batch`, so the encoder is not run again."""
        return self.losses_from_logits(*self.label_logits(batch, encoder_outputs), self.target_examples(batch))

    def label_logits(self, batch: dict[str, torch.Tensor], encoder_outputs: Any = None,
                     model: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, targets) aligned position by position: logits[:, i] predicts targets[:, i] (-100 = no
        label). `model`: another model of the same kind to run instead (a distillation teacher)."""
        labels, model = batch["labels"], model if model is not None else self.model
        if self.kind == "seq2seq":
            decoder_input_ids = self._shift_right(labels)
            inputs = ({"encoder_outputs": encoder_outputs} if encoder_outputs is not None
                      else {"input_ids": batch["input_ids"]})
            out = model(
                **inputs,
                attention_mask=batch["attention_mask"],
                decoder_input_ids=decoder_input_ids,
            )
            return out.logits, labels
        if "position_ids" in batch:  # packed: positions restart per example, the model's own mask keeps them apart
            out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
        else:
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        # prompt tuning (peft) prepends virtual tokens: keep the logits of the real positions only
        logits = out.logits[:, -batch["input_ids"].size(1):]
        return logits[:, :-1], labels[:, 1:]

    @staticmethod
    def target_examples(batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Of a packed batch: the example (index in the batch) each of `label_logits`' targets belongs to, -1
        on padding; None for a padded batch (one example per row)."""
        examples = batch.get("example_ids")
        return None if examples is None else examples[:, 1:]

    @staticmethod
    def losses_from_logits(logits: torch.Tensor, targets: torch.Tensor,
                           examples: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`token_losses` from `label_logits`' output; `examples` (`target_examples`) sums a packed batch per
        example instead of per row."""
        nll = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(),
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="none",
        ).view(targets.shape)
        valid = targets != IGNORE_INDEX
        if examples is None:
            return (nll * valid).sum(dim=1), valid.sum(dim=1)
        n, index = int(examples.max()) + 1, examples.reshape(-1).clamp(min=0)  # padding has no label
        sums = nll.new_zeros(n).index_add_(0, index, (nll * valid).reshape(-1))
        return sums, valid.new_zeros(n, dtype=torch.long).index_add_(0, index, valid.reshape(-1).long())

    def _shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        start = self.model.config.decoder_start_token_id
        if start is None:
            start = self.tokenizer.pad_token_id
        shifted = labels.new_full(labels.shape, self.tokenizer.pad_token_id)
        shifted[:, 1:] = labels[:, :-1]
        shifted[:, 0] = start
        shifted.masked_fill_(shifted == IGNORE_INDEX, self.tokenizer.pad_token_id)
        return shifted

    # ------------------------------------------------------------------ scoring
    def _encoder_reusable(self) -> bool:
        """Whether a seq2seq model's encoder outputs can be handed to both the loss and generation: not
        under peft prompt learning, whose wrapper prepends virtual tokens inside its own forward."""
        peft_config = getattr(self.model, "active_peft_config", None)
        return self.kind == "seq2seq" and not getattr(peft_config, "is_prompt_learning", False)

    @torch.no_grad()
    def score_batch(self, features: list[dict], prompts: list[str],
                    max_new_tokens: int | None) -> tuple[list[str] | None, torch.Tensor, torch.Tensor]:
        """Greedy completions of `prompts` (None when `max_new_tokens` is None) and the per-example summed
        loss and label-token count of `features` (their encoded prompt/completion pairs).

        A seq2seq model runs its encoder once for both (the encoder is most of the cost of scoring short
        answers); generation stops as soon as every sequence has produced eos."""
        batch = {k: v.to(self.model.device) for k, v in self.collate(features).items()}
        if max_new_tokens is None or not self._encoder_reusable():
            nll, ntok = self.token_losses(batch)
            return (None if max_new_tokens is None else self.generate(prompts, max_new_tokens)), nll, ntok
        encoder_outputs = self.model.get_encoder()(input_ids=batch["input_ids"],
                                                   attention_mask=batch["attention_mask"])
        nll, ntok = self.token_losses(batch, encoder_outputs=encoder_outputs)
        out = self.model.generate(encoder_outputs=encoder_outputs, attention_mask=batch["attention_mask"],
                                  max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)], nll, ntok

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        """Batched greedy decoding; returns the completions only, special tokens removed."""
        tok = self.tokenizer
        device = next(self.model.parameters()).device
        enc = [self.generation_input(p, max_new_tokens)[0] for p in prompts]
        side = "right" if self.kind == "seq2seq" else "left"
        width = max(len(e) for e in enc)
        ids = torch.full((len(enc), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, e in enumerate(enc):
            sl = slice(0, len(e)) if side == "right" else slice(width - len(e), width)
            ids[i, sl] = torch.tensor(e)
            mask[i, sl] = 1
        out = self.model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
        )
        if self.kind == "causal":
            out = out[:, width:]
        return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]

    # ------------------------------------------------------------------ sizes
    def parameter_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.model.parameters())
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        return {"trainable_params": trainable, "total_params": total}


def _pad(rows: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ids right-padded with `value` into one long tensor, and the rows' lengths."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    out = np.full((len(rows), int(lengths.max())), value, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return torch.from_numpy(out), torch.from_numpy(lengths)
