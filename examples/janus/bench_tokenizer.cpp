// examples/janus/bench_tokenizer.cpp - janus_tokenizer_bench: encode throughput of janus::Tokenizer
// on one core, in MB/s of input text (issue 13 asks for at least 1 MB/s).
//   janus_tokenizer_bench TOKENIZER.json TEXTS.txt [--seconds S]
// TEXTS.txt: one text per line (escapes as `janus_tokenize`). The texts are encoded in turn,
// repeatedly, for at least S seconds (default 3) after one warm-up pass; the figure is the
// median of five such timings. A benchmark, never a test.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer.hpp"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: janus_tokenizer_bench TOKENIZER.json TEXTS.txt [--seconds S]\n";
    return 2;
  }
  double seconds = 3.0;
  for (int i = 3; i + 1 < argc; i += 2)
    if (std::string(argv[i]) == "--seconds") seconds = std::atof(argv[i + 1]);
  try {
    const janus::Tokenizer tok = janus::Tokenizer::from_file(argv[1]);
    std::ifstream in(argv[2], std::ios::binary);
    if (!in) throw std::runtime_error(std::string(argv[2]) + ": cannot open");
    std::vector<std::string> texts;
    std::string line;
    std::size_t n = 0, bytes = 0;
    while (std::getline(in, line)) texts.push_back(janus::unescape_text_line(line, ++n));
    for (auto& t : texts) bytes += t.size();
    std::size_t ids = 0;
    for (auto& t : texts) ids += tok.encode(t).size();  // warm-up
    std::vector<double> rates;
    for (int rep = 0; rep < 5; ++rep) {
      std::size_t done = 0;
      const auto t0 = std::chrono::steady_clock::now();
      double el = 0;
      do {
        for (auto& t : texts) done += tok.encode(t).size() > 0 ? t.size() : t.size();
        el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      } while (el < seconds / 5);
      rates.push_back(done / el / 1e6);
    }
    std::sort(rates.begin(), rates.end());
    std::printf("%zu texts, %zu bytes, %zu ids per pass; encode: median %.2f MB/s (min %.2f, max %.2f) on one thread\n",
                texts.size(), bytes, ids, rates[2], rates[0], rates[4]);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "janus_tokenizer_bench: " << e.what() << "\n";
    return 1;
  }
}
