// examples/janus/tokenize_main.cpp - janus_tokenize: the `tokenize` command of janus_trainer on its
// own (issue 13), for the tokenizer's end-to-end tests and for machines without libtorch.
//   janus_tokenize --tokenizer FILE.json --input TEXTS.txt --output IDS.jsonl [--overwrite]
#include <iostream>

#include <CLI/CLI.hpp>

#include "tokenizer.hpp"

int main(int argc, char** argv) {
  CLI::App app{"Token ids of texts with a Hugging Face tokenizer.json (byte-level BPE): one text per input line "
               "(escapes \\n, \\t, \\\\), one line {\"ids\": [...]} per text, special tokens as the post-processor "
               "adds them"};
  std::string tokenizer, input, output;
  bool overwrite = false;
  app.add_option("--tokenizer", tokenizer, "tokenizer.json")->required()->check(CLI::ExistingFile);
  app.add_option("--input", input, "TEXTS.txt: one text per line")->required()->check(CLI::ExistingFile);
  app.add_option("--output", output, "IDS.jsonl to write (atomically)")->required();
  app.add_flag("--overwrite", overwrite, "replace an existing output");
  CLI11_PARSE(app, argc, argv);
  return janus::tokenize_file(tokenizer, input, output, std::cerr, overwrite);
}
