# examples/janus/tokenizer.cmake - the Janus-Pro tokenizer (byte-level BPE from tokenizer.json,
# regexes through PCRE2) and its tests: plain C++17, no libtorch (issue 13).
# Included from examples/janus/CMakeLists.txt before the trainer.
