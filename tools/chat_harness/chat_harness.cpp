// llama.cpp's chat-template renderers, driven from Python (tools/goldens/chat_template.py builds and runs this;
// the binary is never committed).
//
//   chat_harness VOCAB.gguf|- TEMPLATE_FILE|- < cases > results
//
// Renders every case with common_chat_templates_apply (use_jinja = true: llama.cpp's own Jinja engine, the path
// of `llama-cli --jinja` and llama-server) after common_chat_templates_init(model, template), exactly as the tools
// do: with a vocab file the BOS/EOS texts and add_bos/add_eos come from it; without ("-") they are empty/false.
// TEMPLATE_FILE "-" means the model's own tokenizer.chat_template (or llama.cpp's ChatML fallback).
//
// Framing (binary safe): a case is  add_generation_prompt ('0'|'1') US role US content US role US content ... RS
// (US = 0x1f, RS = 0x1e).  Output per case:  "OK" US prompt RS  or  "ERR" US message RS.  The first output record
// is "TIME" US <seconds since the epoch when rendering started>, for templates that print the date.
#include "chat.h"
#include "llama.h"

#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

static std::vector<std::string> split(const std::string & s, char sep) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : s) {
        if (c == sep) { out.push_back(cur); cur.clear(); } else { cur += c; }
    }
    out.push_back(cur);
    return out;
}

int main(int argc, char ** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s VOCAB.gguf|- TEMPLATE_FILE|- < cases\n", argv[0]);
        return 2;
    }
    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_backend_init();
    llama_model * model = nullptr;
    if (std::string(argv[1]) != "-") {
        auto mparams = llama_model_default_params();
        mparams.vocab_only = true;
        model = llama_model_load_from_file(argv[1], mparams);
        if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    }
    std::string tmpl;
    if (std::string(argv[2]) != "-") {
        std::ifstream f(argv[2], std::ios::binary);
        tmpl.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    }
    std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    const char US = 0x1f, RS = 0x1e;
    std::cout << "TIME" << US << (long long) std::time(nullptr) << RS;
    common_chat_templates_ptr tmpls;
    try {
        tmpls = common_chat_templates_init(model, tmpl);
    } catch (const std::exception & e) {
        std::cout << "INITERR" << US << e.what() << RS;
        return 0;
    }
    for (const auto & rec : split(input, RS)) {
        if (rec.empty()) continue;
        auto f = split(rec, US);
        common_chat_templates_inputs inputs;
        inputs.use_jinja = true;
        inputs.add_generation_prompt = f[0] == "1";
        for (size_t i = 1; i + 1 < f.size(); i += 2) {
            common_chat_msg msg;
            msg.role = f[i];
            msg.content = f[i + 1];
            inputs.messages.push_back(msg);
        }
        try {
            auto params = common_chat_templates_apply(tmpls.get(), inputs);
            std::cout << "OK" << US << params.prompt << RS;
        } catch (const std::exception & e) {
            std::cout << "ERR" << US << e.what() << RS;
        }
    }
    if (model) llama_model_free(model);
    return 0;
}
