// examples/janus/reward_client.hpp - client of the GenEval reward server that the official GCPO
// trainer calls (spec janus-trainer.md §4.1-4.2; github yifan123/reward-server): images are
// JPEG-encoded as PIL's defaults do (quality 75, 4:2:0, baseline), sent in batches of 2 as an
// HTTP POST to the server's "/" whose raw body is the pickle of
//   {"images": [jpeg bytes, ...], "meta_datas": [metadata dict, ...], "only_strict": False}
// and the reply (HTTP 200) is the pickle of {"scores", "rewards", "strict_rewards",
// "group_rewards", "group_strict_rewards"}; HTTP 500 carries the server's traceback as text.
// The reply is read by the restricted unpickler of pickle.hpp: it never imports or calls.
//
// Failures are never a silent reward: connection failures, timeouts, truncated bodies and HTTP
// 5xx are retried (max_retries, exponential backoff), then RewardClient::score throws
// RewardServerError saying the URL, the batch, the HTTP status or curl error, the retries made
// and the start of the server's reply. A reply that is not a valid reward dict (not a pickle, a
// refused opcode, a wrong length) is not retried: it throws at once.
//
// Proxies: libcurl honours the environment as the curl tool does (http_proxy, HTTPS_PROXY,
// ALL_PROXY, NO_PROXY; the upper-case HTTP_PROXY is ignored, as curl does). A reward server on
// 127.0.0.1 behind a set http_proxy therefore needs NO_PROXY=127.0.0.1,localhost.
//
// Plain C++17 + libcurl + libjpeg-turbo (TurboJPEG API); no libtorch.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pickle.hpp"

namespace janus {

struct RewardServerOptions {
  std::string url;          ///< http:// or https://, e.g. "http://127.0.0.1:18085" (the authors' gunicorn bind)
  double timeout_s = 120;   ///< per HTTP request: connection and whole transfer (gunicorn's own timeout is 120 s)
  int max_retries = 3;      ///< retries per batch after the first attempt (0: one attempt)
  double backoff_s = 1.0;   ///< sleep before retry k (1-based): backoff_s * 2^(k-1)
  int batch = 2;            ///< images per request (the official client sends 2)
  int jpeg_quality = 75;    ///< 1..100; PIL's default is 75
  bool only_strict = false; ///< sent as "only_strict"; the server then forces "rewards" to 0
};

/// Throws std::invalid_argument naming the field ("RewardServerOptions.timeout_s (0) must be > 0").
void validate(const RewardServerOptions& o);

/// An 8-bit RGB image, row-major height x width x 3.
struct Image {
  int height = 0, width = 0;
  std::vector<std::uint8_t> rgb;
};

struct RewardReply {
  std::vector<double> rewards;         ///< one per image, in input order (GenEval: 1.0 correct, 0.0 not)
  std::vector<double> scores;          ///< one per image, or empty when a reply had no "scores"
  std::vector<double> strict_rewards;  ///< one per image, or empty when a reply had no "strict_rewards"
  int requests = 0;                    ///< HTTP requests sent, retries included (= batches + retries)
  int retries = 0;                     ///< requests that were retries of a failed one
  double seconds = 0.0;                ///< wall time of score(): encoding, requests, backoff sleeps
};

/// The reward server could not give rewards for a batch; what() says why (see the file comment).
class RewardServerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class RewardClient {
 public:
  /// Validates the options; throws std::invalid_argument.
  explicit RewardClient(RewardServerOptions options);
  ~RewardClient();
  RewardClient(const RewardClient&) = delete;
  RewardClient& operator=(const RewardClient&) = delete;
  RewardClient(RewardClient&&) noexcept;
  RewardClient& operator=(RewardClient&&) noexcept;

  /// Rewards for images[i] judged against metadata[i] (a GenEval metadata object: tag, include,
  /// exclude, prompt). Batches are sent one after the other, in order. Throws
  /// std::invalid_argument for bad input (sizes, an image whose rgb size is not h*w*3, a
  /// metadata entry that is not a JSON object) and RewardServerError when the server fails.
  /// Not thread-safe: one client per thread (it keeps one HTTP connection alive).
  RewardReply score(const std::vector<Image>& images, const std::vector<nlohmann::json>& metadata);

  const RewardServerOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// JPEG as PIL's Image.save(format="JPEG") with defaults: baseline, 4:2:0, accurate DCT,
/// the given quality. Throws std::invalid_argument for an invalid image (naming `what`).
std::vector<std::uint8_t> encode_jpeg(const Image& image, int quality, const std::string& what = "image");

/// JSON -> Python value: null None, booleans bool, integers int, floats float, strings str,
/// arrays list, objects dict (in nlohmann::json's key order, which is sorted), binary bytes.
/// Throws std::invalid_argument for an unsigned integer above INT64_MAX.
PyValue json_to_py(const nlohmann::json& j);

/// The request body: pickle (protocol 3) of {"images": [...], "meta_datas": [...],
/// "only_strict": ...} as the official client sends it.
std::string reward_request_body(const std::vector<std::vector<std::uint8_t>>& jpegs,
                                const std::vector<nlohmann::json>& metadata, bool only_strict);

}  // namespace janus
