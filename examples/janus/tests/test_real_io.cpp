// Real prompts and real rewards end to end (issue 13): `rl --model-dir DIR --prompts FILE.jsonl
// --reward-server URL` on the tiny Janus-Pro fixture (tests/data/janus_tiny) with the fixture
// tokenizer (tests/fixtures/tokenizer/tiny.json), scored by the loopback reward server
// (tools/loopback_reward_server.py) started on a free port of 127.0.0.1. What the server received
// (its --request-log) is compared with the prompt file; faults of the server must skip steps
// with the reason and then stop the run, never give a reward of 0.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "reward_test_util.hpp"
#include "train.hpp"

namespace fs = std::filesystem;
using janus::TrainConfig;
using janus_rw_test::LoopbackServer;
using janus_rw_test::TempDir;

namespace {

const fs::path kData = JANUS_TEST_DATA_DIR;
const fs::path kTokenizer = fs::path(JANUS_TEST_DATA_DIR) / ".." / "fixtures" / "tokenizer" / "tiny.json";

// Prompts the fixture tokenizer can spell (its vocabulary: "a", " red", " cat", "and", ...).
const std::vector<std::string> kRecords = {
    R"({"tag": "colors", "include": [{"class": "cat", "count": 1, "color": "red"}], "prompt": "a red cat"})",
    R"({"tag": "single_object", "include": [{"class": "cat", "count": 1}], "prompt": "a cat"})",
    R"({"tag": "two_object", "include": [{"class": "cat", "count": 1}, {"class": "dinosaur", "count": 1}], "prompt": "a cat and a red cat"})",
};

std::string prompt_file(const TempDir& dir) {
  std::string text;
  for (const auto& r : kRecords) text += r + "\n";
  const std::string path = dir / "prompts.jsonl";
  janus_rw_test::write_file(path, text);
  return path;
}

TrainConfig real_run(const TempDir& dir, const std::string& url) {
  TrainConfig c;
  c.mode = "rl";
  c.model_dir = (kData / "janus_tiny" / "safetensors").string();
  c.grid_height = c.grid_width = 8;
  c.prompt_file = prompt_file(dir);
  c.tokenizer = kTokenizer.string();
  c.reward_server = url;
  c.prompts = 2;
  c.group = 4;
  c.steps = 3;
  c.lr = 1e-3;
  c.save_every = 0;
  c.image_every = 1;
  c.seed = 5;
  c.out = dir / "run";
  return c;
}

janus::RunOptions quiet() {
  janus::RunOptions o;
  o.progress = false;
  return o;
}

std::vector<nlohmann::json> json_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::string url_of(const LoopbackServer& s) { return "http://127.0.0.1:" + std::to_string(s.port()); }

}  // namespace

TEST_CASE("rl on a prompt file with the model's tokenizer, scored by a reward server", "[real-io]") {
  TempDir dir("real_run");
  LoopbackServer server({"--request-log", dir / "requests.jsonl"}, dir / "server.err");
  const TrainConfig c = real_run(dir, url_of(server));
  REQUIRE(janus::run_training(c, quiet()) == 0);

  // Three steps, each with its rewards from the server: 8 pictures in requests of 2.
  const auto metrics = json_lines(dir / "run/metrics.jsonl");
  REQUIRE(metrics.size() == 3);
  for (const auto& m : metrics) {
    CHECK_FALSE(m.contains("skipped"));
    CHECK(m.at("reward_server").at("requests").get<double>() == 4);
    CHECK(m.at("reward_server").at("retries").get<double>() == 0);
    const double reward = m.at("reward").get<double>();
    CHECK(reward >= 0.0);
    CHECK(reward <= 1.0);
    for (const auto& kv : m.at("accuracy").items())  // tags of the file's records only
      CHECK((kv.key() == "all" || kv.key() == "colors" || kv.key() == "single_object" || kv.key() == "two_object"));
  }

  // What the server received: 12 requests of 2 JPEGs (16 x 16: the fixture's decoder draws
  // 2 x 2 pixels per token; baseline 4:2:0 as PIL), each with the whole record of its prompt,
  // the prompts in the order of the run's draw, each prompt's G = 4 pictures in a row.
  std::vector<nlohmann::json> records;
  for (const auto& r : kRecords) records.push_back(nlohmann::json::parse(r));
  const auto requests = json_lines(dir / "requests.jsonl");
  REQUIRE(requests.size() == 12);
  std::vector<nlohmann::json> metas;
  for (const auto& q : requests) {
    CHECK(q.at("n") == 2);
    CHECK(q.at("only_strict") == false);
    for (const auto& j : q.at("jpegs")) {
      CHECK(j.at("width") == 16);
      CHECK(j.at("height") == 16);
      CHECK(j.at("subsampling") == "4:2:0");
      CHECK(j.at("baseline") == true);
    }
    for (const auto& m : q.at("meta_datas")) metas.push_back(m);
  }
  REQUIRE(metas.size() == 24);
  for (std::int64_t step = 0; step < 3; ++step) {
    const auto drawn = janus::prompt_indices_for_step(records.size(), 2, c.seed, step);
    for (std::size_t p = 0; p < 2; ++p)
      for (std::size_t g = 0; g < 4; ++g) CHECK(metas[static_cast<std::size_t>(step) * 8 + p * 4 + g] == records[drawn[p]]);
  }
  // The sample sheet's prompt list names the file's prompts, row by row.
  const std::string listed = janus_rw_test::read_file(dir / "run/images/step-000001.txt");
  CHECK(listed.find(records[janus::prompt_indices_for_step(3, 2, c.seed, 0)[0]].at("prompt").get<std::string>()) !=
        std::string::npos);
  const auto summary = nlohmann::json::parse(janus_rw_test::read_file(dir / "run/summary.json"));
  CHECK(summary.at("eval_final").contains("skipped"));
}

TEST_CASE("a reward server that fails: the step is skipped with the reason, then the run stops", "[real-io]") {
  TempDir dir("real_fail");
  LoopbackServer server({"--fault", "http500"}, dir / "server.err");
  TrainConfig c = real_run(dir, url_of(server));
  c.reward_retries = 0;
  c.reward_failures = 1;
  try {
    janus::run_training(c, quiet());
    FAIL("the run went on without rewards");
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    CHECK_THAT(what, Catch::Matchers::Contains("HTTP status 500"));
    CHECK_THAT(what, Catch::Matchers::Contains(url_of(server)));
    CHECK_THAT(what, Catch::Matchers::Contains("2 steps in a row without rewards (--reward-failures 1)"));
  }
  const auto metrics = json_lines(dir / "run/metrics.jsonl");
  REQUIRE(metrics.size() == 2);  // one line per skipped attempt, no step with a reward
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(metrics[i].at("step") == 1);
    CHECK(metrics[i].at("failures_in_a_row") == static_cast<int>(i + 1));
    CHECK_THAT(metrics[i].at("skipped").get<std::string>(), Catch::Matchers::Contains("Traceback"));
    CHECK_FALSE(metrics[i].contains("reward"));
  }
  CHECK_FALSE(fs::exists(dir / "run/model.safetensors"));
}

TEST_CASE("a flaky reward server: the request is retried and the retry is in the metrics", "[real-io]") {
  TempDir dir("real_flaky");
  LoopbackServer server({"--fault", "flaky-1"}, dir / "server.err");
  TrainConfig c = real_run(dir, url_of(server));
  c.steps = 1;
  c.reward_retries = 2;
  REQUIRE(janus::run_training(c, quiet()) == 0);
  const auto metrics = json_lines(dir / "run/metrics.jsonl");
  REQUIRE(metrics.size() == 1);
  CHECK(metrics[0].at("reward_server").at("retries").get<double>() == 1);
  CHECK(metrics[0].at("reward_server").at("requests").get<double>() == 5);
}

TEST_CASE("real-prompt settings are checked before anything runs", "[real-io]") {
  TempDir dir("real_bad");
  using Catch::Matchers::Contains;
  TrainConfig c = real_run(dir, "http://127.0.0.1:9");
  {
    TrainConfig b = c;
    b.reward_server.clear();
    CHECK_THROWS_WITH(b.validate(), Contains("--prompts FILE needs --reward-server"));
  }
  {
    TrainConfig b = c;
    b.model_dir.clear();
    CHECK_THROWS_WITH(b.validate(), Contains("--prompts FILE needs --model-dir"));
  }
  {
    TrainConfig b = c;
    b.reward_server = "ftp://127.0.0.1:9";
    CHECK_THROWS_WITH(janus::Trainer(b), Contains("--reward-server"));
  }
  {
    // no --tokenizer and no tokenizer.json in the model directory
    TrainConfig b = c;
    b.tokenizer.clear();
    CHECK_THROWS_WITH(janus::Trainer(b), Contains("the model directory has no tokenizer.json") && Contains("--tokenizer"));
  }
  {
    // a prompt the tokenizer cannot spell ("dog": no "o"), on line 2 of the file
    TrainConfig b = c;
    janus_rw_test::write_file(dir / "bad.jsonl", kRecords[0] + "\n" +
                                                     R"({"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": "a dog"})" + "\n");
    b.prompt_file = dir / "bad.jsonl";
    CHECK_THROWS_WITH(janus::Trainer(b), Contains("bad.jsonl:2: the prompt cannot be tokenized"));
  }
  {
    // a tokenizer with ids past the model's text vocabulary (120): 120 more vocabulary entries,
    // the added tokens numbered after them
    auto tok = nlohmann::json::parse(janus_rw_test::read_file(kTokenizer.string()));
    std::int64_t next = static_cast<std::int64_t>(tok["model"]["vocab"].size());
    for (int i = 0; i < 120; ++i) tok["model"]["vocab"]["x" + std::to_string(i)] = next++;
    for (auto& added : tok["added_tokens"]) added["id"] = next++;
    janus_rw_test::write_file(dir / "big.json", tok.dump());
    TrainConfig b = c;
    b.tokenizer = dir / "big.json";
    CHECK_THROWS_WITH(janus::Trainer(b), Contains("not this model's tokenizer"));
  }
}
