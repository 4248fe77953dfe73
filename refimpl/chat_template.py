"""Chat templates: a conversation (a list of ``{"role", "content"}`` messages) -> the prompt string, as llama.cpp.

llama.cpp has two ways to turn messages into a prompt, and refimpl mirrors both (spec/chat.md):

* **Jinja** (``--jinja``, the default of llama-cli and llama-server): the model's ``tokenizer.chat_template`` is a
  Jinja program, rendered by llama.cpp's own Jinja engine (common/jinja/) from common_chat_templates_apply_jinja
  (common/chat.cpp).  refimpl renders it with ``jinja2`` configured the same way (trim_blocks, lstrip_blocks, one
  trailing newline of the source dropped) and with the same inputs and workarounds:

  - variables ``messages``, ``bos_token``, ``eos_token``, ``enable_thinking`` (true), ``datetime`` and
    ``date_string`` (common_chat_extra_context), ``add_generation_prompt`` only when true (else undefined);
    ``tools`` absent;
  - functions ``raise_exception`` (message prefixed "Jinja Exception: "), ``strftime_now`` (local time),
    ``range``, ``dict``, ``namespace``;
  - a message with empty content has no ``content`` key (common_chat_msg::to_json_oaicompat);
  - the template's capabilities are probed by rendering it (jinja/caps.cpp caps_get): a template that never reads a
    system message's content does not support the system role, and the first system message is merged into the
    next one ("system\\nuser", workaround::system_message_not_supported); a template that only accepts typed
    content gets ``[{"type": "text", "text": ...}]`` parts (messages_inp_normalizer);
  - role "developer" becomes "system" unless the template has ``<|channel|>`` (gpt-oss);
  - when the vocabulary adds BOS (EOS) itself, a leading ``bos_token`` (trailing ``eos_token``) is cut from the
    result (common_chat_template_direct_apply_impl), since tokenizing the prompt adds it again.

* **Built-in** (``--no-jinja``; the C API ``llama_chat_apply_template``, src/llama-chat.cpp): the template string is
  matched against the built-in names, then recognised by substrings (llm_chat_detect_template) and rendered by
  hand-written code (llm_chat_apply_template), mirrored function for function in ``apply_builtin``.

A model without a template falls back to ChatML either way (common_chat_templates_init's CHATML_TEMPLATE_SRC;
``llama_chat_apply_template(NULL, ...)`` means "chatml").

Reading order: ``ChatTemplate`` (from_gguf, apply), ``detect_builtin``, ``apply_builtin``, ``_JinjaTemplate``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

__all__ = ["ChatTemplate", "BUILTIN_TEMPLATES", "CHATML_TEMPLATE_SRC", "detect_builtin", "apply_builtin",
           "llama_chat_apply_template", "ChatTemplateError"]


class ChatTemplateError(ValueError):
    """A template that cannot be used: unknown to the built-in renderer, a Jinja syntax error, or
    ``raise_exception`` called by the template."""


# common/chat.cpp CHATML_TEMPLATE_SRC: the Jinja template used when a model has none
CHATML_TEMPLATE_SRC = (
    "{%- for message in messages -%}\n"
    "  {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "  {{- '<|im_start|>assistant\n' -}}\n"
    "{%- endif -%}"
)

# src/llama-chat.cpp LLM_CHAT_TEMPLATES: built-in name -> renderer id.  (std::map: iterated in sorted order, which
# is what llama_chat_builtin_templates lists.)  Two renderers have no name: "dots1" and "unknown".
BUILTIN_TEMPLATES = {
    "chatml": "chatml", "llama2": "llama2", "llama2-sys": "llama2-sys", "llama2-sys-bos": "llama2-sys-bos",
    "llama2-sys-strip": "llama2-sys-strip", "mistral-v1": "mistral-v1", "mistral-v3": "mistral-v3",
    "mistral-v3-tekken": "mistral-v3-tekken", "mistral-v7": "mistral-v7", "mistral-v7-tekken": "mistral-v7-tekken",
    "phi3": "phi3", "phi4": "phi4", "falcon3": "falcon3", "zephyr": "zephyr", "monarch": "monarch",
    "gemma": "gemma", "orion": "orion", "openchat": "openchat", "vicuna": "vicuna", "vicuna-orca": "vicuna-orca",
    "deepseek": "deepseek", "deepseek2": "deepseek2", "deepseek3": "deepseek3", "deepseek-ocr": "deepseek-ocr",
    "command-r": "command-r", "llama3": "llama3", "chatglm3": "chatglm3", "chatglm4": "chatglm4",
    "glmedge": "glmedge", "minicpm": "minicpm", "exaone3": "exaone3", "exaone4": "exaone4",
    "exaone-moe": "exaone-moe", "rwkv-world": "rwkv-world", "granite": "granite", "granite-4.0": "granite-4.0",
    "granite-4.1": "granite-4.1", "gigachat": "gigachat", "megrez": "megrez", "yandex": "yandex",
    "bailing": "bailing", "bailing-think": "bailing-think", "bailing2": "bailing2", "llama4": "llama4",
    "smolvlm": "smolvlm", "hunyuan-moe": "hunyuan-moe", "gpt-oss": "gpt-oss", "hunyuan-dense": "hunyuan-dense",
    "hunyuan-vl": "hunyuan-vl", "kimi-k2": "kimi-k2", "seed_oss": "seed_oss", "grok-2": "grok-2",
    "pangu-embedded": "pangu-embedded", "solar-open": "solar-open",
}


def _trim(s: str) -> str:
    # llama-chat.cpp trim(): isspace() in the C locale, byte by byte (all ASCII)
    return s.strip(" \t\n\v\f\r")


def _ascii_upper(s: str) -> str:
    # std::toupper in the C locale changes ASCII letters only
    return "".join(chr(ord(c) - 32) if "a" <= c <= "z" else c for c in s)


def detect_builtin(tmpl: str) -> str | None:
    """llm_chat_detect_template: a built-in name, or the renderer whose markers the template contains; None if
    the template is unknown to the built-in renderer."""
    if tmpl in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[tmpl]

    def has(s):
        return s in tmpl

    if has("<|im_start|>"):
        return "phi4" if has("<|im_sep|>") else "smolvlm" if has("<end_of_utterance>") else "chatml"
    if tmpl.startswith("mistral") or has("[INST]"):
        if has("[SYSTEM_PROMPT]"):
            return "mistral-v7"
        if has("' [INST] ' + system_message") or has("[AVAILABLE_TOOLS]"):
            if has(" [INST]"):
                return "mistral-v1"
            if has('"[INST]"'):
                return "mistral-v3-tekken"
            return "mistral-v3"
        if has("content.strip()"):
            return "llama2-sys-strip"
        if has("bos_token + '[INST]"):
            return "llama2-sys-bos"
        if has("<<SYS>>"):
            return "llama2-sys"
        return "llama2"
    if has("<|assistant|>") and has("<|end|>"):
        return "phi3"
    if has("[gMASK]<sop>"):
        return "chatglm4"
    if has("<|assistant|>") and has("<|user|>"):
        if has("<|tool_declare|>"):
            return "exaone-moe"
        return "falcon3" if has("</s>") else "glmedge"
    if has("<|{{ item['role'] }}|>") and has("<|begin_of_image|>"):
        return "glmedge"
    if has("<|user|>") and has("<|endoftext|>"):
        return "zephyr"
    if has("bos_token + message['role']"):
        return "monarch"
    if has("<start_of_turn>"):
        return "gemma"
    if has("'\\n\\nAssistant: ' + eos_token"):
        return "orion"
    if has("GPT4 Correct "):
        return "openchat"
    if has("USER: ") and has("ASSISTANT: "):
        return "vicuna-orca" if has("SYSTEM: ") else "vicuna"
    if has("### Instruction:") and has("<|EOT|>"):
        return "deepseek"
    if has("<|START_OF_TURN_TOKEN|>") and has("<|USER_TOKEN|>"):
        return "command-r"
    if has("<|start_header_id|>") and has("<|end_header_id|>"):
        return "llama3"
    if has("[gMASK]sop"):
        return "chatglm3"
    if has("<用户>"):
        return "minicpm"
    if has("'Assistant: ' + message['content'] + eos_token"):
        return "deepseek2"
    if has("<｜Assistant｜>") and has("<｜User｜>") and has("<｜end▁of▁sentence｜>"):
        return "deepseek3"
    if has("[|system|]") and has("[|assistant|]") and has("[|endofturn|]"):
        return "exaone4" if has("[|tool|]") else "exaone3"
    if has("rwkv-world") or has("{{- 'User: ' + message['content']|trim + '\\n\\n' -}}"):
        return "rwkv-world"
    if has("<|start_of_role|>"):
        if has("<tool_call>") or has("<tools>"):
            return "granite-4.0" if has("g4_default_system_message") else "granite-4.1"
        return "granite"
    if has("message['role'] + additional_special_tokens[0] + message['content'] + additional_special_tokens[1]"):
        return "gigachat"
    if has("<|role_start|>"):
        return "megrez"
    if has(" Ассистент:"):
        return "yandex"
    if has("<role>ASSISTANT</role>") and has("'HUMAN'"):
        return "bailing"
    if has("<role>ASSISTANT</role>") and has('"HUMAN"') and has("<think>"):
        return "bailing-think"
    if has("<role>ASSISTANT</role>") and has("<role>HUMAN</role>") and has("<|role_end|>"):
        return "bailing2"
    if has("<|header_start|>") and has("<|header_end|>"):
        return "llama4"
    if has("<|endofuserprompt|>"):
        return "dots1"
    if has("<|extra_0|>") and has("<|extra_4|>"):
        return "hunyuan-moe"
    if has("<|start|>") and has("<|channel|>"):
        return "gpt-oss"
    if has("<｜hy_Assistant｜>") and has("<｜hy_begin▁of▁sentence｜>"):
        return "hunyuan-vl"
    if has("<｜hy_Assistant｜>") and has("<｜hy_place▁holder▁no▁3｜>"):
        return "hunyuan-dense"
    if has("<|im_assistant|>assistant<|im_middle|>"):
        return "kimi-k2"
    if has("<seed:bos>"):
        return "seed_oss"
    if has("'Assistant: '  + message['content'] + '<|separator|>"):
        return "grok-2"
    if has("[unused9]系统：[unused10]"):
        return "pangu-embedded"
    if has("<|begin|>") and has("<|end|>") and has("<|content|>"):
        return "solar-open"
    return None


def apply_builtin(kind: str, chat: list[tuple[str, str]], add_ass: bool) -> str:
    """llm_chat_apply_template: render (role, content) pairs with the built-in renderer ``kind``."""
    out: list[str] = []
    w = out.append
    if kind == "chatml":
        for role, content in chat:
            w(f"<|im_start|>{role}\n{content}<|im_end|>\n")
        if add_ass:
            w("<|im_start|>assistant\n")
    elif kind in ("mistral-v7", "mistral-v7-tekken"):
        sp = " " if kind == "mistral-v7" else ""
        for role, content in chat:
            if role == "system":
                w(f"[SYSTEM_PROMPT]{sp}{content}[/SYSTEM_PROMPT]")
            elif role == "user":
                w(f"[INST]{sp}{content}[/INST]")
            else:
                w(f"{sp}{content}</s>")
    elif kind in ("mistral-v1", "mistral-v3", "mistral-v3-tekken"):
        lead = " " if kind == "mistral-v1" else ""
        trail = "" if kind == "mistral-v3-tekken" else " "
        trim_assistant = kind == "mistral-v3"
        inside = False
        for role, content in chat:
            if not inside:
                w(f"{lead}[INST]{trail}")
                inside = True
            if role == "system":
                w(content + "\n\n")
            elif role == "user":
                w(f"{content}{lead}[/INST]")
            else:
                w(f"{trail}{_trim(content) if trim_assistant else content}</s>")
                inside = False
    elif kind in ("llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip"):
        support_system = kind != "llama2"
        bos_inside = kind == "llama2-sys-bos"
        strip = kind == "llama2-sys-strip"
        inside = True                                   # skip BOS at the beginning
        w("[INST] ")
        for role, content in chat:
            if strip:
                content = _trim(content)
            if not inside:
                inside = True
                w("<s>[INST] " if bos_inside else "[INST] ")
            if role == "system":
                w(f"<<SYS>>\n{content}\n<</SYS>>\n\n" if support_system else content + "\n")
            elif role == "user":
                w(content + " [/INST]")
            else:
                w(content + "</s>")
                inside = False
    elif kind == "phi3":
        for role, content in chat:
            w(f"<|{role}|>\n{content}<|end|>\n")
        if add_ass:
            w("<|assistant|>\n")
    elif kind == "phi4":
        for role, content in chat:
            w(f"<|im_start|>{role}<|im_sep|>{content}<|im_end|>")
        if add_ass:
            w("<|im_start|>assistant<|im_sep|>")
    elif kind == "falcon3":
        for role, content in chat:
            w(f"<|{role}|>\n{content}\n")
        if add_ass:
            w("<|assistant|>\n")
    elif kind == "zephyr":
        for role, content in chat:
            w(f"<|{role}|>\n{content}<|endoftext|>\n")
        if add_ass:
            w("<|assistant|>\n")
    elif kind == "monarch":
        for i, (role, content) in enumerate(chat):
            w(f"{'' if i == 0 else '<s>'}{role}\n{content}</s>\n")   # BOS skipped for the first message
        if add_ass:
            w("<s>assistant\n")
    elif kind == "gemma":
        system_prompt = ""
        for role, content in chat:
            if role == "system":                        # merged into the next user turn
                system_prompt += _trim(content)
                continue
            role = "model" if role == "assistant" else role
            w(f"<start_of_turn>{role}\n")
            if system_prompt and role != "model":
                w(system_prompt + "\n\n")
                system_prompt = ""
            w(_trim(content) + "<end_of_turn>\n")
        if add_ass:
            w("<start_of_turn>model\n")
    elif kind == "orion":
        system_prompt = ""
        for role, content in chat:
            if role == "system":
                system_prompt += content
                continue
            if role == "user":
                w("Human: ")
                if system_prompt:
                    w(system_prompt + "\n\n")
                    system_prompt = ""
                w(content + "\n\nAssistant: </s>")
            else:
                w(content + "</s>")
    elif kind == "openchat":
        for role, content in chat:
            if role == "system":
                w(content + "<|end_of_turn|>")
            else:
                role = _ascii_upper(role[:1]) + role[1:]
                w(f"GPT4 Correct {role}: {content}<|end_of_turn|>")
        if add_ass:
            w("GPT4 Correct Assistant:")
    elif kind in ("vicuna", "vicuna-orca"):
        for role, content in chat:
            if role == "system":
                w(f"SYSTEM: {content}\n" if kind == "vicuna-orca" else content + "\n\n")
            elif role == "user":
                w(f"USER: {content}\n")
            elif role == "assistant":
                w(f"ASSISTANT: {content}</s>\n")
        if add_ass:
            w("ASSISTANT:")
    elif kind == "deepseek":
        for role, content in chat:
            if role == "system":
                w(content)
            elif role == "user":
                w(f"### Instruction:\n{content}\n")
            elif role == "assistant":
                w(f"### Response:\n{content}\n<|EOT|>\n")
        if add_ass:
            w("### Response:\n")
    elif kind == "command-r":
        tags = {"system": "<|SYSTEM_TOKEN|>", "user": "<|USER_TOKEN|>", "assistant": "<|CHATBOT_TOKEN|>"}
        for role, content in chat:
            if role in tags:
                w(f"<|START_OF_TURN_TOKEN|>{tags[role]}{_trim(content)}<|END_OF_TURN_TOKEN|>")
        if add_ass:
            w("<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>")
    elif kind == "llama3":
        for role, content in chat:
            w(f"<|start_header_id|>{role}<|end_header_id|>\n\n{_trim(content)}<|eot_id|>")
        if add_ass:
            w("<|start_header_id|>assistant<|end_header_id|>\n\n")
    elif kind == "chatglm3":
        w("[gMASK]sop")
        for role, content in chat:
            w(f"<|{role}|>\n {content}")
        if add_ass:
            w("<|assistant|>")
    elif kind == "chatglm4":
        w("[gMASK]<sop>")
        for role, content in chat:
            w(f"<|{role}|>\n{content}")
        if add_ass:
            w("<|assistant|>\n")
    elif kind == "glmedge":
        for role, content in chat:
            w(f"<|{role}|>\n{content}")
        if add_ass:
            w("<|assistant|>")
    elif kind == "minicpm":
        for role, content in chat:
            w(f"<用户>{_trim(content)}<AI>" if role == "user" else _trim(content))
    elif kind == "deepseek2":
        for role, content in chat:
            if role == "system":
                w(content + "\n\n")
            elif role == "user":
                w(f"User: {content}\n\n")
            elif role == "assistant":
                w(f"Assistant: {content}<｜end▁of▁sentence｜>")
        if add_ass:
            w("Assistant:")
    elif kind == "deepseek3":
        for role, content in chat:
            if role == "system":
                w(content + "\n\n")
            elif role == "user":
                w("<｜User｜>" + content)
            elif role == "assistant":
                w(f"<｜Assistant｜>{content}<｜end▁of▁sentence｜>")
        if add_ass:
            w("<｜Assistant｜>")
    elif kind == "deepseek-ocr":
        for role, content in chat:
            w(content)
    elif kind in ("exaone3", "exaone4"):
        for role, content in chat:
            if role == "system":
                w(f"[|system|]{_trim(content)}[|endofturn|]\n")
            elif role == "user":
                w(f"[|user|]{_trim(content)}\n")
            elif role == "assistant":
                w(f"[|assistant|]{_trim(content)}[|endofturn|]\n")
            elif role == "tool" and kind == "exaone4":
                w(f"[|tool|]{_trim(content)}[|endofturn|]\n")
        if add_ass:
            w("[|assistant|]")
    elif kind == "exaone-moe":
        for role, content in chat:
            if role in ("system", "user", "assistant", "tool"):
                w(f"<|{role}|>\n{_trim(content)}<|endofturn|>\n")
        if add_ass:
            w("<|assistant|>\n")
    elif kind == "rwkv-world":                          # needs "\n\n" as the EOT token
        for i, (role, content) in enumerate(chat):
            if role == "system":
                w(f"System: {_trim(content)}\n\n")
            elif role == "user":
                w(f"User: {_trim(content)}\n\n")
                if i == len(chat) - 1:
                    w("Assistant:")
            elif role == "assistant":
                w(f"Assistant: {_trim(content)}\n\n")
    elif kind == "granite":
        for role, content in chat:
            w(f"<|start_of_role|>{role}<|end_of_role|>")
            if role == "assistant_tool_call":
                w("<|tool_call|>")
            w(content + "<|end_of_text|>\n")
        if add_ass:
            w("<|start_of_role|>assistant<|end_of_role|>")
    elif kind in ("granite-4.0", "granite-4.1"):
        for role, content in chat:
            if role == "assistant_tool_call":
                w("<|start_of_role|>assistant<|end_of_role|><|tool_call|>")
            else:
                w(f"<|start_of_role|>{role}<|end_of_role|>")
            w(content + "<|end_of_text|>\n")
        if add_ass:
            w("<|start_of_role|>assistant<|end_of_role|>")
    elif kind == "gigachat":
        has_system = bool(chat) and chat[0][0] == "system"
        w(f"<s>{chat[0][1]}<|message_sep|>" if has_system else "<s>")
        for role, content in chat[1 if has_system else 0:]:
            if role == "user":
                w(f"user<|role_sep|>{content}<|message_sep|>available functions<|role_sep|>[]<|message_sep|>")
            elif role == "assistant":
                w(f"assistant<|role_sep|>{content}<|message_sep|>")
        if add_ass:
            w("assistant<|role_sep|>")
    elif kind == "megrez":
        for role, content in chat:
            w(f"<|role_start|>{role}<|role_end|>{content}<|turn_end|>")
        if add_ass:
            w("<|role_start|>assistant<|role_end|>")
    elif kind == "yandex":                              # "\n\n" is the EOT token
        for role, content in chat:
            if role == "user":
                w(f" Пользователь: {content}\n\n")
            elif role == "assistant":
                w(f" Ассистент: {content}\n\n")
        if add_ass:
            w(" Ассистент:[SEP]")
    elif kind in ("bailing", "bailing-think"):
        for role, content in chat:
            role = "HUMAN" if role == "user" else _ascii_upper(role)
            w(f"<role>{role}</role>{content}")
        if add_ass:
            w("<role>ASSISTANT</role>")
            if kind == "bailing-think":
                w("<think>")
    elif kind == "bailing2":
        if not (chat and chat[0][0] == "system"):
            w("<role>SYSTEM</role>detailed thinking off<|role_end|>")
        for role, content in chat:
            role = "HUMAN" if role == "user" else _ascii_upper(role)
            w(f"<role>{role}</role>{content}<|role_end|>")
        if add_ass:
            w("<role>ASSISTANT</role>")
    elif kind == "llama4":
        for role, content in chat:
            w(f"<|header_start|>{role}<|header_end|>\n\n{_trim(content)}<|eot|>")
        if add_ass:
            w("<|header_start|>assistant<|header_end|>\n\n")
    elif kind == "smolvlm":
        w("<|im_start|>")                               # <|im_start|> as BOS; the rest is not ChatML
        for role, content in chat:
            if role == "system":
                w(content + "\n\n")
            elif role == "user":
                w(f"User: {content}<end_of_utterance>\n")
            else:
                w(f"Assistant: {content}<end_of_utterance>\n")
        if add_ass:
            w("Assistant:")
    elif kind == "dots1":
        for role, content in chat:
            if role == "system":
                w(f"<|system|>{content}<|endofsystem|>")
            elif role == "user":
                w(f"<|userprompt|>{content}<|endofuserprompt|>")
            else:
                w(f"<|response|>{content}<|endofresponse|>")
        if add_ass:
            w("<|response|>")
    elif kind == "hunyuan-moe":
        for role, content in chat:
            if role == "system":
                w(f"<|startoftext|>{content}<|extra_4|>")
            elif role == "assistant":
                w(content + "<|eos|>")
            else:
                w(f"<|startoftext|>{content}<|extra_0|>")
    elif kind == "gpt-oss":
        for role, content in chat:
            w(f"<|start|>{role}<|message|>{content}")
            w("<|return|>" if role == "assistant" else "<|end|>")
        if add_ass:
            w("<|start|>assistant")
    elif kind == "hunyuan-dense":
        for i, (role, content) in enumerate(chat):
            if i == 0 and role == "system":
                w(content + "<｜hy_place▁holder▁no▁3｜>")
            if role == "assistant":
                w(f"<｜hy_Assistant｜>{content}<｜hy_place▁holder▁no▁2｜>")
            elif role == "user":
                w(f"<｜hy_User｜>{content}<｜hy_Assistant｜>")
    elif kind == "hunyuan-vl":
        w("<｜hy_begin▁of▁sentence｜>")
        for i, (role, content) in enumerate(chat):
            if i == 0 and role == "system":
                w(content + "<｜hy_place▁holder▁no▁3｜>")
                continue
            if role == "user":
                w(content + "<｜hy_User｜>")
            elif role == "assistant":
                w(content + "<｜hy_Assistant｜>")
    elif kind == "kimi-k2":
        heads = {"system": "<|im_system|>system<|im_middle|>", "user": "<|im_user|>user<|im_middle|>",
                 "assistant": "<|im_assistant|>assistant<|im_middle|>", "tool": "<|im_system|>tool<|im_middle|>"}
        for role, content in chat:
            w(heads.get(role, "") + content + "<|im_end|>")
        if add_ass:
            w("<|im_assistant|>assistant<|im_middle|>")
    elif kind == "seed_oss":
        for role, content in chat:
            w(f"<seed:bos>{role}\n{_trim(content) if role == 'assistant' else content}<seed:eos>")
        if add_ass:
            w("<seed:bos>assistant\n")
    elif kind == "grok-2":
        for role, content in chat:
            if role == "system":
                w(f"System: {_trim(content)}<|separator|>\n\n")
            elif role == "user":
                w(f"Human: {_trim(content)}<|separator|>\n\n")
            elif role == "assistant":
                w(f"Assistant: {content}<|separator|>\n\n")
        if add_ass:
            w("Assistant:")
    elif kind == "pangu-embedded":
        names = {"system": "系统", "user": "用户", "assistant": "助手", "tool": "工具", "function": "方法"}
        for i, (role, content) in enumerate(chat):
            if i == 0 and role != "system":
                w("[unused9]系统：[unused10]")
            if role in names:
                w(f"[unused9]{names[role]}：{content}[unused10]")
        if add_ass:
            w("[unused9]助手：")
    elif kind == "solar-open":
        for role, content in chat:
            w(f"<|begin|>{role}<|content|>{content}<|end|>")
        if add_ass:
            w("<|begin|>assistant")
    else:
        raise ChatTemplateError(f"no built-in chat template {kind!r}")
    return "".join(out)


def _pairs(messages) -> list[tuple[str, str]]:
    pairs = []
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content", "")
        if content is None:
            content = ""
        if not isinstance(role, str) or not isinstance(content, str):
            raise ValueError(f"message {i}: role and content must be strings, got {m!r}")
        pairs.append((role, content))
    return pairs


def llama_chat_apply_template(tmpl: str | None, messages, add_generation_prompt: bool = True) -> str:
    """llama_chat_apply_template (src/llama.cpp): ``tmpl`` is a built-in name or a template text recognised by its
    markers (None = "chatml"); raises ChatTemplateError where the C returns -1."""
    kind = detect_builtin("chatml" if tmpl is None else tmpl)
    if kind is None:
        raise ChatTemplateError("this chat template is not supported by the built-in renderer "
                                "(llama_chat_apply_template returns -1); use the Jinja renderer")
    return apply_builtin(kind, _pairs(messages), add_generation_prompt)


# ---------------------------------------------------------------------------------------------------------------
# the Jinja path


class _Tracked(dict):
    """A message (or part) during the capability probe: records which keys the template read (member access
    marks a value used in jinja/runtime.cpp)."""

    def __init__(self, *a, log=None, path="", **kw):
        super().__init__(*a, **kw)
        self._log = log
        self._path = path

    def __getitem__(self, key):
        self._log.add(f"{self._path}.{key}")
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._log.add(f"{self._path}.{key}")
        return super().get(key, default)


class _ProbeStr(str):
    """Content string during the typed-content probe: iterating it is what llama.cpp's engine refuses
    ("Expected iterable or object type in for loop"), and is the sign the template wants parts."""

    log: set = set()

    def __iter__(self):
        self.log.add("array_access")
        raise TypeError("Expected iterable or object type in for loop: got String")


class _ProbeList(list):
    log: set = set()

    def __iter__(self):
        self.log.add("array_access")
        return super().__iter__()


@dataclass
class _Caps:
    # jinja/caps.h defaults
    supports_system_role: bool = True
    supports_string_content: bool = True
    supports_typed_content: bool = False


def _plain(value):
    """Values for json.dumps: Undefined -> null (value.cpp value_to_json_internal), containers copied."""
    import jinja2

    if isinstance(value, jinja2.Undefined):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _generation_extension():
    """``{% generation %}...{% endgeneration %}``: transformers' AssistantTracker marks the assistant's tokens for
    training masks; for rendering it is its body (llama.cpp's parser treats it the same way)."""
    from jinja2 import nodes
    from jinja2.ext import Extension

    class GenerationExtension(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    return GenerationExtension


def _undefined_class():
    import jinja2

    class LlamaUndefined(jinja2.ChainableUndefined):
        """llama.cpp's undefined value: member access gives undefined again, it prints as "", and ``+`` with a
        string concatenates its empty text (runtime.cpp binary_expression: string + anything)."""

        def __add__(self, other):
            if isinstance(other, str):
                return other
            return super().__add__(other)

        def __radd__(self, other):
            if isinstance(other, str):
                return other
            return super().__radd__(other)

    return LlamaUndefined


def _environment(clock):
    import jinja2
    import jinja2.sandbox

    def raise_exception(message):
        raise ChatTemplateError("Jinja Exception: " + str(message))

    def strftime_now(fmt):
        return time.strftime(fmt, clock())

    def tojson(value, indent=None, separators=None, ensure_ascii=False, sort_keys=False):
        # value.cpp tojson: key order kept, ", " and ": " unless indented, non-ASCII kept
        value = _plain(value)
        if separators is None:
            separators = (", " if indent is None else ",", ": ")
        return json.dumps(value, indent=indent, separators=tuple(separators), ensure_ascii=ensure_ascii,
                          sort_keys=sort_keys)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False,
        extensions=["jinja2.ext.loopcontrols", _generation_extension()], undefined=_undefined_class())
    env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now)
    env.filters["tojson"] = tojson
    string_test = env.tests["string"]

    def is_string(v):
        if isinstance(v, (_ProbeStr, _ProbeList)):
            v.log.add("test_is_string")
        return string_test(v)

    def selectattr(ctx, seq, *args):
        if isinstance(seq, (_ProbeStr, _ProbeList)):
            seq.log.add("selectattr")
        return jinja2.filters.sync_do_selectattr(ctx, seq, *args)

    env.tests["string"] = is_string
    env.filters["selectattr"] = jinja2.pass_context(selectattr)
    return env


class _JinjaTemplate:
    """common_chat_template: the parsed program, its capabilities and the BOS/EOS strings."""

    def __init__(self, source: str, bos_token: str, eos_token: str):
        import jinja2

        self.clock = time.localtime        # llama.cpp: std::localtime(now); settable for reproducible renders
        self.env = _environment(lambda: self.clock())
        # lexer.cpp normalises \r\n and \r to \n; jinja2 does the same (newline_sequence), and both drop one
        # trailing newline of the source
        self.source = source.replace("\r\n", "\n").replace("\r", "\n")
        if source.endswith("\n"):
            self.source = self.source[:-1]
        try:
            self.program = self.env.from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise ChatTemplateError(f"chat template syntax error (line {e.lineno}): {e.message}") from None
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.caps = self._probe_caps()

    def _run(self, variables) -> str:
        import jinja2

        try:
            return self.program.render(**variables)
        except ChatTemplateError:
            raise
        except jinja2.TemplateError as e:
            raise ChatTemplateError(f"chat template error: {e}") from None
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, ZeroDivisionError) as e:
            raise ChatTemplateError(f"chat template error: {type(e).__name__}: {e}") from None

    def _try(self, messages) -> tuple[bool, str]:
        # caps.cpp caps_try_execute: empty BOS/EOS, tools = [], add_generation_prompt = true; failures are data
        try:
            return True, self._run({"messages": messages, "tools": [], "bos_token": "", "eos_token": "",
                                    "add_generation_prompt": True})
        except ChatTemplateError:
            return False, ""

    def _probe_caps(self) -> _Caps:
        """jinja/caps.cpp caps_get, the two probes that matter for plain conversations (tools are never sent)."""
        caps = _Caps()
        # typed content: content as a string marker; iterated / selectattr'd -> the template wants parts
        log: set = set()
        marker = type("_Str", (_ProbeStr,), {"log": log})("STRING_MARKER")
        ok, rendered = self._try([_Tracked({"role": "user", "content": marker}, log=set())])
        used_as_array = "selectattr" in log or "array_access" in log
        if used_as_array:
            caps.supports_typed_content = True
        if not ok:
            caps.supports_string_content = False
        elif used_as_array and "STRING_MARKER" not in rendered:
            caps.supports_string_content = False
        if "test_is_string" in log:
            log2: set = set()
            parts = type("_List", (_ProbeList,), {"log": log2})()
            ok2, _ = self._try([_Tracked({"role": "user", "content": parts}, log=set())])
            if ok2 and ("selectattr" in log2 or "array_access" in log2):
                caps.supports_typed_content = True
        # system role: does the template ever read the system message's content?
        used: set = set()
        self._try([_Tracked({"role": "system", "content": "System message"}, log=used, path="0"),
                   _Tracked({"role": "user", "content": "User message"}, log=used, path="1")])
        if "0.content" not in used:
            caps.supports_system_role = False
        return caps


class ChatTemplate:
    """A model's chat template, rendered as llama.cpp renders it.

    ``ChatTemplate(source, bos_token=, eos_token=, add_bos=, add_eos=, use_jinja=True)``; ``source`` None, "" or
    "chatml" means llama.cpp's default (ChatML).  ``ChatTemplate.from_gguf(gguf)`` reads
    ``tokenizer.chat_template`` and the BOS/EOS token texts from a GGUF (model or vocab file)."""

    def __init__(self, source: str | None = None, bos_token: str = "", eos_token: str = "", add_bos: bool = False,
                 add_eos: bool = False, use_jinja: bool = True):
        self.explicit = bool(source) and source != "chatml"
        src = source or ""
        if not src or src == "chatml":
            src = CHATML_TEMPLATE_SRC
        # common_chat_templates_init's two source patches (gpt-oss and Mistral templates that reject what the
        # server sends)
        if "<|channel|>" in src and "in message.content or" in src:
            src = src.replace('{%- if "<|channel|>analysis<|message|>" in message.content or '
                              '"<|channel|>final<|message|>" in message.content %}', "{%- if false %}")
        if "[TOOL_CALLS]" in src and "if (message['content'] is none or" in src:
            src = src.replace("{%- if (message['content'] is none or message['content'] == '' or "
                              "message['content']|length == 0) and (message['tool_calls'] is not defined or "
                              "message['tool_calls'] is none or message['tool_calls']|length == 0) %}",
                              "{%- if false %}")
        self.source = src
        self.bos_token, self.eos_token = bos_token, eos_token
        self.add_bos, self.add_eos = add_bos, add_eos
        self.use_jinja = use_jinja
        if use_jinja:
            self._jinja = _JinjaTemplate(src, bos_token, eos_token)
        else:
            self._jinja = None
            if detect_builtin(src) is None:   # common_chat_verify_template(tmpl, use_jinja=false)
                raise ChatTemplateError("this chat template is not supported by the built-in renderer; "
                                        "use the Jinja renderer (use_jinja=True, the CLI's default)")

    @classmethod
    def from_gguf(cls, gguf, override: str | None = None, use_jinja: bool = True) -> "ChatTemplate":
        """common_chat_templates_init(model, override): the template of ``gguf`` (a refimpl.gguf file or a path),
        BOS/EOS as their token texts (common_token_to_piece(special=true)) and the vocabulary's add_bos/add_eos."""
        from .tokenizer import Tokenizer

        if isinstance(gguf, (str, bytes)) or hasattr(gguf, "__fspath__"):
            from . import gguf as gguf_mod

            gguf = gguf_mod.read(gguf)
        tok = Tokenizer.from_gguf(gguf)
        source = override if override else gguf.get("tokenizer.chat_template")
        if isinstance(source, bytes):
            source = source.decode("utf-8")

        def text(token_id):
            if token_id is None or token_id < 0:
                return ""
            return tok.token_to_piece(token_id, special=True).decode("utf-8", errors="replace")

        return cls(source, bos_token=text(tok.bos_id), eos_token=text(tok.eos_id),
                   add_bos=bool(tok.add_bos), add_eos=bool(tok.add_eos), use_jinja=use_jinja)

    @property
    def clock(self):
        """The clock ``strftime_now``, ``datetime`` and ``date_string`` read (default time.localtime, as llama.cpp's
        std::localtime); set it to render reproducibly."""
        return self._jinja.clock if self._jinja else time.localtime

    @clock.setter
    def clock(self, fn):
        if self._jinja:
            self._jinja.clock = fn

    def apply(self, messages, add_generation_prompt: bool = True) -> str:
        """The prompt string for ``messages`` (dicts with "role" and "content"); with ``add_generation_prompt``
        it ends with the opening of the assistant's turn (common_chat_templates_apply)."""
        pairs = _pairs(messages)
        if not self.use_jinja:
            return apply_builtin(detect_builtin(self.source), pairs, add_generation_prompt)
        return self._apply_jinja(pairs, add_generation_prompt)

    def _apply_jinja(self, pairs, add_generation_prompt: bool) -> str:
        # common_chat_templates_apply_jinja -> common_chat_template_direct_apply_impl
        tmpl = self._jinja
        caps = tmpl.caps
        if "You have access to the following functions in JSONSchema format" in tmpl.source:
            # workaround::trim_all_content (StepFun): contents trimmed (isspace) before rendering
            pairs = [(role, content.strip(" \t\n\v\f\r")) for role, content in pairs]
        msgs = []
        for role, content in pairs:
            m = {"role": role}
            if content:                                 # to_json_oaicompat: empty content -> no "content" key
                only_typed = not caps.supports_string_content and caps.supports_typed_content
                m["content"] = [{"type": "text", "text": content}] if only_typed else content
            msgs.append(m)
        if "<|channel|>" not in tmpl.source:            # map_developer_role_to_system
            for m in msgs:
                if m["role"] == "developer":
                    m["role"] = "system"
        if not caps.supports_system_role and msgs and msgs[0]["role"] == "system":
            # system_message_not_supported: "system\nnext" (the C reads both contents as strings)
            if len(msgs) > 1:
                first = msgs.pop(0)
                msgs[0]["content"] = _as_text(first.get("content", "")) + "\n" + _as_text(msgs[0].get("content", ""))
            else:
                msgs.pop(0)
        variables = {"messages": msgs, "bos_token": tmpl.bos_token, "eos_token": tmpl.eos_token,
                     "enable_thinking": True}
        now = tmpl.clock()
        variables["datetime"] = time.strftime("%b %d %Y", now)      # common_chat_extra_context
        variables["date_string"] = time.strftime("%d %b %Y", now)
        if add_generation_prompt:
            variables["add_generation_prompt"] = True
        result = tmpl._run(variables)
        if "<|channel|>" in tmpl.source and not add_generation_prompt:
            # common_chat_params_init_gpt_oss (inference): the last <|return|> becomes <|end|>
            pos = result.rfind("<|return|>")
            if pos >= 0:
                result = result[:pos] + "<|end|>" + result[pos + len("<|return|>"):]
        if self.add_bos and tmpl.bos_token and result.startswith(tmpl.bos_token):
            result = result[len(tmpl.bos_token):]
        if self.add_eos and tmpl.eos_token and result.endswith(tmpl.eos_token):
            result = result[:-len(tmpl.eos_token)]
        return result


def _as_text(content) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content)
    return content
