// Tests of the reward-server client (examples/janus/reward_client.hpp): options and input
// validation, the JPEG encoding (checked by decoding it and by its quantisation tables), the
// request body (read by CPython's pickle), and every behaviour against the loopback reward
// server (examples/janus/tools/loopback_reward_server.py) started on a free port of 127.0.0.1:
// success with known colours, only_strict, every reply protocol, and the fault cases
// (connection refused, slow, HTTP 500, truncated, cut, malformed, evil, wrong length, flaky).
// Expected rewards follow from how the images are built and the scorer's documented rule.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <turbojpeg.h>

#include "reward_client.hpp"
#include "reward_test_util.hpp"

using janus::Image;
using janus::RewardClient;
using janus::RewardServerError;
using janus::RewardServerOptions;
using janus_rw_test::LoopbackServer;
using janus_rw_test::read_file;
using janus_rw_test::run_python;
using janus_rw_test::TempDir;
using janus_rw_test::write_file;
using json = nlohmann::json;

namespace {

// The loopback server is on 127.0.0.1: a proxy set in the environment of whoever runs the tests
// must not catch these requests (libcurl and Python's urllib both read no_proxy / NO_PROXY).
[[maybe_unused]] const bool kNoProxy = [] {
  ::setenv("no_proxy", "127.0.0.1,localhost", 1);
  ::setenv("NO_PROXY", "127.0.0.1,localhost", 1);
  return true;
}();

using RGB = std::array<std::uint8_t, 3>;
constexpr RGB kRed{255, 0, 0}, kBlue{0, 0, 255}, kGreen{0, 128, 0}, kWhite{255, 255, 255}, kBlack{0, 0, 0};

/// size x size: the first `left` columns `a`, the others `b`.
Image split_image(int size, int left, RGB a, RGB b) {
  Image im;
  im.height = im.width = size;
  im.rgb.resize(static_cast<std::size_t>(size) * static_cast<std::size_t>(size) * 3);
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x)
      for (int c = 0; c < 3; ++c)
        im.rgb[(static_cast<std::size_t>(y) * static_cast<std::size_t>(size) + static_cast<std::size_t>(x)) * 3 + static_cast<std::size_t>(c)] =
            x < left ? a[static_cast<std::size_t>(c)] : b[static_cast<std::size_t>(c)];
  return im;
}

json meta(const std::string& tag, const std::string& colour = "") {
  json clause = {{"class", "apple"}, {"count", 1}};
  if (!colour.empty()) clause["color"] = colour;
  return json{{"tag", tag}, {"include", json::array({clause})}, {"prompt", "a photo of an apple"}};
}

RewardServerOptions fast(const std::string& url) {
  RewardServerOptions o;
  o.url = url;
  o.timeout_s = 10;
  o.max_retries = 0;
  o.backoff_s = 0.01;
  return o;
}

std::string error_of(RewardClient& c, const std::vector<Image>& im, const std::vector<json>& m) {
  try {
    c.score(im, m);
  } catch (const RewardServerError& e) {
    return e.what();
  }
  return "no RewardServerError";
}

// Two images that the scorer must reward 1 and 0: all red asked red; all blue asked red.
std::vector<Image> two_images() { return {split_image(64, 64, kRed, kRed), split_image(64, 64, kBlue, kBlue)}; }
std::vector<json> two_metas() { return {meta("colors", "red"), meta("color_attr", "red")}; }

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

// ----- validation ----------------------------------------------------------------------------------

TEST_CASE("RewardServerOptions: validation names the field and the value", "[rewards]") {
  auto err = [](const RewardServerOptions& o) {
    try {
      janus::validate(o);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("valid");
  };
  RewardServerOptions o;
  o.url = "http://127.0.0.1:18085";
  CHECK(err(o) == "valid");
  o.url = "HTTPS://example.org/score";
  CHECK(err(o) == "valid");
  o.url = "ftp://x";
  CHECK_THAT(err(o), Catch::Contains("RewardServerOptions.url 'ftp://x' must start with http:// or https://"));
  o.url = "127.0.0.1:18085";
  CHECK_THAT(err(o), Catch::Contains("RewardServerOptions.url '127.0.0.1:18085'"));
  o.url = "http://";
  CHECK_THAT(err(o), Catch::Contains("names no host"));
  o.url = "http://h";
  o.timeout_s = 0;
  CHECK_THAT(err(o), Catch::Contains("RewardServerOptions.timeout_s (0)"));
  o.timeout_s = 1;
  o.max_retries = -1;
  CHECK_THAT(err(o), Catch::Contains("RewardServerOptions.max_retries (-1)"));
  o.max_retries = 0;
  o.backoff_s = -0.5;
  CHECK_THAT(err(o), Catch::Contains("RewardServerOptions.backoff_s (-0.5)"));
  o.backoff_s = 0;
  o.batch = 0;
  CHECK_THAT(err(o), Catch::Contains("RewardServerOptions.batch (0)"));
  o.batch = 2;
  o.jpeg_quality = 101;
  CHECK_THAT(err(o), Catch::Contains("RewardServerOptions.jpeg_quality (101)"));
  CHECK_THROWS_AS(RewardClient(o), std::invalid_argument);
}

TEST_CASE("RewardClient::score: bad input is refused before anything is sent, naming the entry", "[rewards]") {
  RewardClient c(fast("http://127.0.0.1:9"));  // never contacted
  std::vector<Image> im = two_images();
  CHECK_THROWS_WITH(c.score(im, {meta("colors", "red")}), Catch::Contains("2 images but 1 metadata entries"));
  CHECK_THROWS_WITH(c.score(im, {meta("colors", "red"), json::array()}), Catch::Contains("metadata[1] is a JSON array"));
  im[1].rgb.pop_back();
  CHECK_THROWS_WITH(c.score(im, two_metas()), Catch::Contains("images[1]: rgb has 12287 bytes, expected height*width*3 = 12288"));
  im[1] = Image{};
  CHECK_THROWS_WITH(c.score(im, two_metas()), Catch::Contains("images[1]: height (0) and width (0) must be >= 1"));
  const auto r = c.score({}, {});  // nothing to score: no request
  CHECK(r.requests == 0);
  CHECK(r.rewards.empty());
}

// ----- JPEG and request body -----------------------------------------------------------------------

TEST_CASE("encode_jpeg: baseline, 4:2:0, libjpeg's quality-scaled tables, decodes to the picture", "[rewards]") {
  const Image im = split_image(64, 32, kRed, kBlue);
  for (int quality : {75, 50}) {
    INFO("quality " << quality);
    const auto jpg = janus::encode_jpeg(im, quality);
    REQUIRE(jpg.size() > 4);
    CHECK((jpg[0] == 0xff && jpg[1] == 0xd8));
    // Walk the markers: the frame must be SOF0 (baseline), and the DQT tables libjpeg's
    // (IJG Annex K tables scaled by 200 - 2q percent for q >= 50, rounded).
    bool sof0 = false;
    std::vector<std::vector<int>> dqt(4);
    for (std::size_t i = 2; i + 4 <= jpg.size() && jpg[i] == 0xff;) {
      const int marker = jpg[i + 1];
      const std::size_t len = (std::size_t(jpg[i + 2]) << 8) | jpg[i + 3];
      if (marker == 0xc0) sof0 = true;
      if (marker >= 0xc1 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 && marker != 0xcc) FAIL("a non-baseline frame");
      if (marker == 0xdb)
        for (std::size_t p = i + 4; p < i + 2 + len; p += 65) {
          const int t = jpg[p] & 0x0f;
          REQUIRE((jpg[p] >> 4) == 0);  // 8-bit table
          for (int k = 0; k < 64; ++k) dqt[static_cast<std::size_t>(t)].push_back(jpg[p + 1 + static_cast<std::size_t>(k)]);
        }
      if (marker == 0xda) break;
      i += 2 + len;
    }
    CHECK(sof0);
    REQUIRE(dqt[0].size() == 64);
    REQUIRE(dqt[1].size() == 64);
    // Zigzag entries 0 and 1: luminance 16, 11; chrominance 17, 18 in the standard tables.
    const int scale = 200 - 2 * quality;
    CHECK(dqt[0][0] == (16 * scale + 50) / 100);
    CHECK(dqt[0][1] == (11 * scale + 50) / 100);
    CHECK(dqt[1][0] == (17 * scale + 50) / 100);
    CHECK(dqt[1][1] == (18 * scale + 50) / 100);

    tjhandle h = tjInitDecompress();
    REQUIRE(h != nullptr);
    int w = 0, ht = 0, ss = -1, cs = -1;
    REQUIRE(tjDecompressHeader3(h, jpg.data(), jpg.size(), &w, &ht, &ss, &cs) == 0);
    CHECK(w == 64);
    CHECK(ht == 64);
    CHECK(ss == TJSAMP_420);
    std::vector<unsigned char> rgb(64 * 64 * 3);
    REQUIRE(tjDecompress2(h, jpg.data(), jpg.size(), rgb.data(), 64, 0, 64, TJPF_RGB, 0) == 0);
    tjDestroy(h);
    // Away from the edge (column 32), the colours come back within a few levels.
    for (int y : {0, 31, 63})
      for (int x : {0, 10, 24, 40, 63}) {
        const RGB want = x < 32 ? kRed : kBlue;
        for (int c = 0; c < 3; ++c)
          CHECK(std::abs(int(rgb[(std::size_t(y) * 64 + std::size_t(x)) * 3 + std::size_t(c)]) - int(want[std::size_t(c)])) <= 8);
      }
  }
}

TEST_CASE("json_to_py: JSON kinds map to Python kinds", "[rewards]") {
  using janus::PyValue;
  const json j = json::parse(R"({"tag": "position", "include": [{"class": "cow", "count": 1, "position": ["right of", 0]}],
                                 "w": 0.5, "neg": -3, "ok": true, "none": null})");
  const PyValue v = janus::json_to_py(j);
  REQUIRE(v.kind() == PyValue::Kind::Dict);
  CHECK(v.find("tag")->as_str() == "position");
  CHECK(v.find("w")->as_double() == 0.5);
  CHECK(v.find("neg")->as_int() == -3);
  CHECK(v.find("ok")->as_bool() == true);
  CHECK(v.find("none")->is_none());
  const PyValue& clause = v.find("include")->items().at(0);
  CHECK(clause.find("count")->kind() == PyValue::Kind::Int);
  CHECK(clause.find("position")->items().at(0).as_str() == "right of");
  CHECK_THROWS_WITH(janus::json_to_py(json(std::uint64_t(1) << 63)), Catch::Contains("does not fit in int64"));
}

TEST_CASE("reward_request_body: CPython's pickle.loads reads the official request dict", "[rewards]") {
  TempDir dir("request");
  const std::vector<std::uint8_t> j1 = {0xff, 0xd8, 0x00, 0x01}, j2 = {0xff, 0xd8, 0xff, 0xd9};
  const std::vector<json> metas = {meta("colors", "red"), json::parse(R"({"tag": "counting", "include": [{"class": "wine glass", "count": 2}], "exclude": [{"class": "wine glass", "count": 3}], "prompt": "a photo of two wine glasses"})")};
  write_file(dir / "req.pkl", janus::reward_request_body({j1, j2}, metas, false));
  write_file(dir / "check.py", R"PY(
import pickle, sys
d = pickle.loads(open(sys.argv[1], "rb").read())
assert type(d) is dict and list(d) == ["images", "meta_datas", "only_strict"], d.keys()
assert d["images"] == [b"\xff\xd8\x00\x01", b"\xff\xd8\xff\xd9"] and all(type(x) is bytes for x in d["images"])
assert d["only_strict"] is False
m0, m1 = d["meta_datas"]
assert m0 == {"tag": "colors", "include": [{"class": "apple", "count": 1, "color": "red"}], "prompt": "a photo of an apple"}, m0
assert m1 == {"tag": "counting", "include": [{"class": "wine glass", "count": 2}], "exclude": [{"class": "wine glass", "count": 3}], "prompt": "a photo of two wine glasses"}, m1
assert type(m1["include"][0]["count"]) is int
print("ok")
)PY");
  const auto r = run_python(dir / "check.py", {dir / "req.pkl"});
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output == "ok\n");
}

// ----- against the loopback server ------------------------------------------------------------------

TEST_CASE("score: rewards of constructed images through the loopback server, batches of 2", "[rewards]") {
  TempDir dir("success");
  LoopbackServer server({"--request-log", dir / "requests.jsonl"}, dir / "server.err");
  RewardClient c(fast(server.url()));
  // 128x128; fractions from the construction: columns of the asked colour / 128.
  const std::vector<Image> im = {
      split_image(128, 128, kRed, kRed),      // red asked red: f = 1
      split_image(128, 32, kRed, kBlue),      // red asked red: f = 32/128 = 0.25
      split_image(128, 96, kGreen, kWhite),   // green asked green: f = 0.75
      split_image(128, 128, kBlack, kBlack),  // no colour asked: f = share not near black = 0
      split_image(128, 128, kWhite, kWhite),  // no colour asked: f = 1
  };
  const std::vector<json> m = {meta("colors", "red"), meta("color_attr", "red"), meta("colors", "green"), meta("single_object"),
                               meta("counting")};
  const std::vector<double> f = {1.0, 0.25, 0.75, 0.0, 1.0};
  const auto r = c.score(im, m);
  INFO(server.log());
  CHECK(r.requests == 3);  // 2 + 2 + 1
  CHECK(r.retries == 0);
  CHECK(r.seconds > 0);
  REQUIRE(r.rewards.size() == 5);
  REQUIRE(r.scores.size() == 5);
  REQUIRE(r.strict_rewards.size() == 5);
  for (std::size_t i = 0; i < 5; ++i) {
    INFO("image " << i);
    CHECK(r.scores[i] == Approx(f[i]).margin(0.02));  // JPEG may move a column at a colour edge: 1/128 each
    CHECK(r.rewards[i] == (f[i] >= 0.5 ? 1.0 : 0.0));
    CHECK(r.strict_rewards[i] == (f[i] >= 0.9 ? 1.0 : 0.0));
  }
  // What the server received: batches 2, 2, 1; baseline 4:2:0 JPEGs of the right size; our metadata.
  std::istringstream log(read_file(dir / "requests.jsonl"));
  std::string line;
  std::vector<json> reqs;
  while (std::getline(log, line)) reqs.push_back(json::parse(line));
  REQUIRE(reqs.size() == 3);
  std::size_t k = 0;
  for (std::size_t q = 0; q < 3; ++q) {
    CHECK(reqs[q]["n"] == (q < 2 ? 2 : 1));
    CHECK(reqs[q]["only_strict"] == false);
    for (std::size_t i = 0; i < reqs[q]["jpegs"].size(); ++i, ++k) {
      const json& jp = reqs[q]["jpegs"][i];
      CHECK(jp["width"] == 128);
      CHECK(jp["height"] == 128);
      CHECK(jp["subsampling"] == "4:2:0");
      CHECK(jp["baseline"] == true);
      CHECK(reqs[q]["meta_datas"][i] == m[k]);
    }
  }
  CHECK(k == 5);
}

TEST_CASE("score: only_strict is sent and the server zeroes the rewards", "[rewards]") {
  TempDir dir("strict");
  LoopbackServer server({"--request-log", dir / "requests.jsonl"}, dir / "server.err");
  RewardServerOptions o = fast(server.url());
  o.only_strict = true;
  RewardClient c(o);
  const auto r = c.score(two_images(), two_metas());
  CHECK(r.rewards == std::vector<double>{0.0, 0.0});
  CHECK(r.strict_rewards == std::vector<double>{1.0, 0.0});
  CHECK(json::parse(read_file(dir / "requests.jsonl"))["only_strict"] == true);
}

TEST_CASE("score: replies pickled with every protocol 0-5 are read", "[rewards]") {
  TempDir dir("protocols");
  for (int p = 0; p <= 5; ++p) {
    INFO("reply protocol " << p);
    LoopbackServer server({"--reply-protocol", std::to_string(p)}, dir / "server.err");
    RewardClient c(fast(server.url()));
    const auto r = c.score(two_images(), two_metas());
    CHECK(r.rewards == std::vector<double>{1.0, 0.0});
    CHECK(r.scores.size() == 2);
  }
}

TEST_CASE("fault: connection refused is retried, then names the URL and the retries", "[rewards]") {
  const std::string url = "http://127.0.0.1:" + std::to_string(janus_rw_test::free_port());
  RewardServerOptions o = fast(url);
  o.max_retries = 2;
  RewardClient c(o);
  const std::string e = error_of(c, two_images(), two_metas());
  CHECK_THAT(e, Catch::Contains("reward server " + url + ": batch 0 of 1 (images 0..1) failed after 2 retries"));
  CHECK_THAT(e, Catch::Contains("curl error 7"));
}

TEST_CASE("fault: a reply slower than timeout_s is a timeout error", "[rewards]") {
  TempDir dir("slow");
  LoopbackServer server({"--fault", "slow", "--slow-seconds", "5"}, dir / "server.err");
  RewardServerOptions o = fast(server.url());
  o.timeout_s = 1;
  o.max_retries = 1;
  RewardClient c(o);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string e = error_of(c, two_images(), two_metas());
  const double s = seconds_since(t0);
  CHECK_THAT(e, Catch::Contains("curl error 28") && Catch::Contains("timeout_s = 1") && Catch::Contains("after 1 retry"));
  CHECK(s >= 2.0);  // two attempts of 1 s
  CHECK(s < 4.5);   // not the server's 5 s
}

TEST_CASE("fault: HTTP 500 reports the status and the server's traceback", "[rewards]") {
  TempDir dir("http500");
  LoopbackServer server({"--fault", "http500"}, dir / "server.err");
  RewardServerOptions o = fast(server.url());
  o.max_retries = 1;
  RewardClient c(o);
  const std::string e = error_of(c, two_images(), two_metas());
  CHECK_THAT(e, Catch::Contains("failed after 1 retry (max_retries 1): HTTP status 500"));
  CHECK_THAT(e, Catch::Contains("Traceback (most recent call last):"));
  CHECK_THAT(e, Catch::Contains("RuntimeError: injected fault http500 (request 2)"));
}

TEST_CASE("fault: a body shorter than its Content-Length is an error", "[rewards]") {
  TempDir dir("truncated");
  LoopbackServer server({"--fault", "truncated"}, dir / "server.err");
  RewardServerOptions o = fast(server.url());
  o.max_retries = 1;
  RewardClient c(o);
  const std::string e = error_of(c, two_images(), two_metas());
  CHECK_THAT(e, Catch::Contains("after 1 retry") && Catch::Contains("curl error 18"));
}

TEST_CASE("fault: a cut pickle is an error naming the truncation", "[rewards]") {
  TempDir dir("cut");
  LoopbackServer server({"--fault", "cut"}, dir / "server.err");
  RewardClient c(fast(server.url()));
  CHECK_THAT(error_of(c, two_images(), two_metas()), Catch::Contains("HTTP 200 but the reply is not an acceptable pickle") &&
                                                         Catch::Contains("reply: truncated at byte"));
}

TEST_CASE("fault: a reply that is not a pickle is an error", "[rewards]") {
  TempDir dir("malformed");
  LoopbackServer server({"--fault", "malformed"}, dir / "server.err");
  RewardClient c(fast(server.url()));
  CHECK_THAT(error_of(c, two_images(), two_metas()), Catch::Contains("not an acceptable pickle") &&
                                                         Catch::Contains("opcode <unknown> (0x3c) at byte 0 is refused") &&
                                                         Catch::Contains("<html>this is not a pickle"));
}

TEST_CASE("fault: an evil reply (os.system through GLOBAL/STACK_GLOBAL + REDUCE) is refused and runs nothing", "[rewards]") {
  TempDir dir("evil");
  const std::string pwned = dir / "pwned";
  for (int p : {2, 4}) {
    INFO("reply protocol " << p);
    std::filesystem::remove(pwned);
    LoopbackServer server({"--fault", "evil", "--evil-file", pwned, "--reply-protocol", std::to_string(p)}, dir / "server.err");
    RewardClient c(fast(server.url()));
    const std::string e = error_of(c, two_images(), two_metas());
    CHECK_THAT(e, Catch::Contains(p == 2 ? "opcode GLOBAL (0x63)" : "opcode STACK_GLOBAL (0x93)") && Catch::Contains("is refused") &&
                      Catch::Contains("posix.system"));
    CHECK_FALSE(std::filesystem::exists(pwned));
    // The payload is real: CPython's unrestricted pickle.loads of the same reply runs the command.
    write_file(dir / "req.pkl", janus::reward_request_body({janus::encode_jpeg(two_images()[0], 75), janus::encode_jpeg(two_images()[1], 75)},
                                                           two_metas(), false));
    write_file(dir / "load.py", R"PY(
import pickle, sys, urllib.request
body = open(sys.argv[2], "rb").read()
reply = urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/", data=body, method="POST"), timeout=10).read()
pickle.loads(reply)
)PY");
    const auto r = run_python(dir / "load.py", {server.url(), dir / "req.pkl"});
    INFO(r.output);
    CHECK(r.status == 0);
    CHECK(std::filesystem::exists(pwned));
  }
}

TEST_CASE("fault: a rewards list of the wrong length names both lengths", "[rewards]") {
  TempDir dir("wrong_length");
  LoopbackServer server({"--fault", "wrong-length"}, dir / "server.err");
  RewardClient c(fast(server.url()));
  CHECK_THAT(error_of(c, two_images(), two_metas()), Catch::Contains("reply \"rewards\" has 1 values, expected 2 (one per image of the batch)"));
}

TEST_CASE("fault: flaky-2 succeeds on the third request with 3 retries allowed, and the backoff doubles", "[rewards]") {
  TempDir dir("flaky");
  LoopbackServer server({"--fault", "flaky-2"}, dir / "server.err");
  RewardServerOptions o = fast(server.url());
  o.max_retries = 3;
  o.backoff_s = 0.2;
  RewardClient c(o);
  const auto r = c.score(two_images(), two_metas());
  CHECK(r.retries == 2);
  CHECK(r.requests == 3);
  CHECK(r.rewards == std::vector<double>{1.0, 0.0});
  CHECK(r.seconds >= 0.2 + 0.4);  // sleeps before retries 1 and 2
  // The server still counts: its next request is a normal one.
  const auto r2 = c.score(two_images(), two_metas());
  CHECK(r2.retries == 0);
}

TEST_CASE("fault: flaky-5 with max_retries 3 fails after 3 retries", "[rewards]") {
  TempDir dir("flaky5");
  LoopbackServer server({"--fault", "flaky-5"}, dir / "server.err");
  RewardServerOptions o = fast(server.url());
  o.max_retries = 3;
  RewardClient c(o);
  CHECK_THAT(error_of(c, two_images(), two_metas()), Catch::Contains("failed after 3 retries (max_retries 3): HTTP status 500") &&
                                                         Catch::Contains("injected fault flaky-5 (request 4)"));
}

TEST_CASE("fault: HTTP 404 (a wrong path) is not retried", "[rewards]") {
  TempDir dir("404");
  LoopbackServer server({}, dir / "server.err");
  RewardServerOptions o = fast(server.url() + "/nope");
  o.max_retries = 3;
  RewardClient c(o);
  CHECK_THAT(error_of(c, two_images(), two_metas()), Catch::Contains("failed after 0 retries (not retried): HTTP status 404"));
}
