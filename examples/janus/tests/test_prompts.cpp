// Prompt files of real runs (prompts.hpp): GenEval JSONL, prompt-only JSONL and JSON arrays,
// every error naming the file and line, and the per-step draw.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include <unistd.h>

#include "prompts.hpp"

namespace fs = std::filesystem;
using janus::PromptRecord;

namespace {

struct TempFile {
  fs::path path;
  explicit TempFile(const std::string& text, const std::string& name = "prompts.jsonl") {
    path = fs::temp_directory_path() / ("janus-prompts-" + std::to_string(::getpid()) + "-" + name);
    std::ofstream(path, std::ios::binary) << text;
  }
  ~TempFile() { fs::remove(path); }
};

std::string error_of(const std::string& text, const std::string& name = "prompts.jsonl") {
  TempFile f(text, name);
  try {
    janus::read_prompt_file(f.path.string());
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

// Lines as in shared/spec/janus-trainer.md section 5.1 (Flow-GRPO's GenEval metadata).
const char* kGeneval =
    R"({"tag": "counting", "include": [{"class": "wine glass", "count": 2}], "exclude": [{"class": "wine glass", "count": 3}], "prompt": "a photo of two wine glasses"})"
    "\n"
    R"({"tag": "color_attr", "include": [{"class": "handbag", "count": 1, "color": "pink"}, {"class": "scissors", "count": 1, "color": "black"}], "prompt": "a photo of a pink handbag and a black scissors"})"
    "\n\n"
    R"({"tag": "position", "include": [{"class": "laptop", "count": 1}, {"class": "cow", "count": 1, "position": ["right of", 0]}], "prompt": "a photo of a cow right of a laptop"})"
    "\n";

}  // namespace

TEST_CASE("GenEval metadata lines are read whole, in order, with their line numbers", "[prompts]") {
  TempFile f(kGeneval);
  const auto r = janus::read_prompt_file(f.path.string());
  REQUIRE(r.size() == 3);
  CHECK(r[0].prompt == "a photo of two wine glasses");
  CHECK(r[0].tag == "counting");
  CHECK(r[0].line == 1);
  CHECK(r[0].meta["exclude"][0]["count"] == 3);
  CHECK(r[1].tag == "color_attr");
  CHECK(r[1].meta["include"][1]["color"] == "black");
  CHECK(r[2].line == 4);  // the blank line 3 is skipped, the numbering is the file's
  CHECK(r[2].meta["include"][1]["position"][0] == "right of");
}

TEST_CASE("prompt-only records: JSON Lines and a JSON array", "[prompts]") {
  {
    TempFile f("{\"prompt\": \"the woman is wearing an indian sari\", \"id\": 7}\n{\"prompt\": \"a red bus\"}\n");
    const auto r = janus::read_prompt_file(f.path.string());
    REQUIRE(r.size() == 2);
    CHECK(r[0].tag.empty());
    CHECK(r[0].meta["id"] == 7);
    CHECK(r[1].prompt == "a red bus");
  }
  {
    TempFile f("  [ {\"prompt\": \"a\"}, {\"prompt\": \"b c\"} ]\n", "hps.json");
    const auto r = janus::read_prompt_file(f.path.string());
    REQUIRE(r.size() == 2);
    CHECK(r[1].prompt == "b c");
    CHECK(r[1].line == 2);
  }
}

TEST_CASE("bad prompt files are refused naming the file, the line and the field", "[prompts]") {
  using Catch::Matchers::Contains;
  CHECK_THAT(error_of("{\"prompt\": \"ok\"}\n{\"prompt\": \n"), Contains("prompts.jsonl:2: not valid JSON"));
  CHECK_THAT(error_of("{\"text\": \"no prompt\"}\n"), Contains(":1: `prompt` is missing"));
  CHECK_THAT(error_of("{\"prompt\": 3}\n"), Contains(":1: `prompt` must be a string, got 3"));
  CHECK_THAT(error_of("{\"prompt\": \"  \"}\n"), Contains(":1: `prompt` is blank"));
  CHECK_THAT(error_of("[1, 2]\n"), Contains(":1: a record must be a JSON object, got number"));
  CHECK_THAT(error_of("\n\n"), Contains("has no prompt record"));
  CHECK_THAT(error_of("[{\"prompt\": \"a\"},"), Contains("not valid JSON"));
  // GenEval records, field by field
  const std::string p = R"(, "prompt": "p"})";
  CHECK_THAT(error_of(R"({"tag": "counting", "include": [{"class": "cat", "count": 0}])" + p),
             Contains(":1: `include[0].count` must be an integer >= 1, got 0"));
  CHECK_THAT(error_of(R"({"tag": "counting", "include": [{"class": "cat", "count": 2.0}])" + p),
             Contains("`include[0].count` must be an integer >= 1, got 2.0"));
  CHECK_THAT(error_of(R"({"tag": "shapes", "include": [{"class": "cat", "count": 1}])" + p),
             Contains("`tag` must be one of 'single_object'"));
  CHECK_THAT(error_of(R"({"include": [{"class": "cat", "count": 1}])" + p), Contains("`tag` is missing"));
  CHECK_THAT(error_of(R"({"tag": "colors", "include": [])" + p), Contains("`include` must be a non-empty list"));
  CHECK_THAT(error_of(R"({"tag": "colors", "include": [{"count": 1}])" + p), Contains("`include[0].class` is missing"));
  CHECK_THAT(error_of(R"({"tag": "colors", "include": [{"class": "cat", "count": 1, "color": "teal"}])" + p),
             Contains("`include[0].color` must be one of 'red'"));
  CHECK_THAT(error_of(R"({"tag": "position", "include": [{"class": "cat", "count": 1, "position": ["left of", 0]}])" + p),
             Contains("`include[0].position[1]` must index an earlier include clause (0..none), got 0"));
  CHECK_THAT(error_of(R"({"tag": "position", "include": [{"class": "a", "count": 1}, {"class": "b", "count": 1, "position": ["beside", 0]}])" + p),
             Contains("`include[1].position[0]` must be one of 'left of'"));
  CHECK_THAT(error_of(R"({"tag": "counting", "include": [{"class": "cat", "count": 2}], "exclude": [{"class": "cat"}])" + p),
             Contains("`exclude[0].count` is missing"));
  // the first bad line is reported with its number, after good ones
  CHECK_THAT(error_of(std::string(kGeneval) + R"({"tag": "colors", "include": [{"class": "cat", "count": -1}])" + p),
             Contains("prompts.jsonl:5: `include[0].count`"));
  const fs::path dir = fs::temp_directory_path();
  CHECK_THROWS_WITH(janus::read_prompt_file(dir.string()), Contains("is a directory"));
  CHECK_THROWS_WITH(janus::read_prompt_file((dir / "no-such-prompts.jsonl").string()), Contains("cannot be opened"));
}

TEST_CASE("the per-step draw: epochs are permutations, pure in (seed, step), independent of the step size split", "[prompts]") {
  const std::size_t n = 10;
  // every epoch of 10 records is a permutation: steps 0..4 of 2 cover each record once
  std::multiset<std::size_t> seen;
  for (std::int64_t s = 0; s < 5; ++s)
    for (std::size_t i : janus::prompt_indices_for_step(n, 2, 42, s)) seen.insert(i);
  for (std::size_t i = 0; i < n; ++i) CHECK(seen.count(i) == 1);
  // the same (seed, step) gives the same records; another seed another order
  CHECK(janus::prompt_indices_for_step(n, 3, 42, 7) == janus::prompt_indices_for_step(n, 3, 42, 7));
  std::vector<std::size_t> a, b;
  for (std::int64_t s = 0; s < 5; ++s) {
    for (std::size_t i : janus::prompt_indices_for_step(n, 2, 1, s)) a.push_back(i);
    for (std::size_t i : janus::prompt_indices_for_step(n, 2, 2, s)) b.push_back(i);
  }
  CHECK(a != b);
  // the sequence does not depend on how it is cut into steps: 6 steps of 5 = 3 steps of 10
  std::vector<std::size_t> by5, by10;
  for (std::int64_t s = 0; s < 6; ++s)
    for (std::size_t i : janus::prompt_indices_for_step(n, 5, 9, s)) by5.push_back(i);
  for (std::int64_t s = 0; s < 3; ++s)
    for (std::size_t i : janus::prompt_indices_for_step(n, 10, 9, s)) by10.push_back(i);
  CHECK(by5 == by10);
  // more per step than records: whole epochs then the next one's start
  const auto big = janus::prompt_indices_for_step(3, 7, 5, 0);
  REQUIRE(big.size() == 7);
  std::map<std::size_t, int> k;
  for (std::size_t i : big) ++k[i];
  CHECK(k.size() == 3);
  for (auto& [i, c] : k) CHECK(c >= 2);
  CHECK(janus::prompt_indices_for_step(1, 3, 0, 4) == std::vector<std::size_t>{0, 0, 0});
  CHECK_THROWS(janus::prompt_indices_for_step(0, 1, 0, 0));
  CHECK_THROWS(janus::prompt_indices_for_step(4, 0, 0, 0));
}
