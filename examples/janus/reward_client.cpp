// examples/janus/reward_client.cpp - the reward-server client: JPEG (TurboJPEG), pickle, libcurl.
#include "reward_client.hpp"

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <mutex>
#include <sstream>
#include <thread>

#include <curl/curl.h>
#include <turbojpeg.h>

namespace janus {

// ===== options ==================================================================================

namespace {

std::string num(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

bool starts_with_ci(const std::string& s, const char* prefix) {
  std::size_t i = 0;
  for (; prefix[i]; ++i)
    if (i >= s.size() || std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

}  // namespace

void validate(const RewardServerOptions& o) {
  const char* scheme = starts_with_ci(o.url, "http://") ? "http://" : starts_with_ci(o.url, "https://") ? "https://" : nullptr;
  if (!scheme) throw std::invalid_argument("RewardServerOptions.url '" + o.url + "' must start with http:// or https://");
  if (o.url.size() == std::char_traits<char>::length(scheme) || o.url[std::char_traits<char>::length(scheme)] == '/')
    throw std::invalid_argument("RewardServerOptions.url '" + o.url + "' names no host");
  if (!(o.timeout_s > 0) || !std::isfinite(o.timeout_s))
    throw std::invalid_argument("RewardServerOptions.timeout_s (" + num(o.timeout_s) + ") must be a positive number of seconds");
  if (o.max_retries < 0) throw std::invalid_argument("RewardServerOptions.max_retries (" + std::to_string(o.max_retries) + ") must be >= 0");
  if (!(o.backoff_s >= 0) || !std::isfinite(o.backoff_s))
    throw std::invalid_argument("RewardServerOptions.backoff_s (" + num(o.backoff_s) + ") must be >= 0 seconds");
  if (o.batch < 1) throw std::invalid_argument("RewardServerOptions.batch (" + std::to_string(o.batch) + ") must be >= 1");
  if (o.jpeg_quality < 1 || o.jpeg_quality > 100)
    throw std::invalid_argument("RewardServerOptions.jpeg_quality (" + std::to_string(o.jpeg_quality) + ") must be in 1..100");
}

// ===== JPEG =====================================================================================

namespace {

struct TjHandle {
  tjhandle h = nullptr;
  TjHandle() : h(tjInitCompress()) {
    if (!h) throw std::runtime_error(std::string("TurboJPEG: tjInitCompress failed: ") + tjGetErrorStr2(nullptr));
  }
  ~TjHandle() { if (h) tjDestroy(h); }
  TjHandle(const TjHandle&) = delete;
  TjHandle& operator=(const TjHandle&) = delete;
};

std::vector<std::uint8_t> encode_with(tjhandle h, const Image& im, int quality, const std::string& what) {
  if (im.height < 1 || im.width < 1)
    throw std::invalid_argument(what + ": height (" + std::to_string(im.height) + ") and width (" + std::to_string(im.width) + ") must be >= 1");
  if (im.height > 65500 || im.width > 65500)
    throw std::invalid_argument(what + ": " + std::to_string(im.height) + "x" + std::to_string(im.width) + " exceeds JPEG's 65500 pixels per side");
  const std::size_t want = static_cast<std::size_t>(im.height) * static_cast<std::size_t>(im.width) * 3;
  if (im.rgb.size() != want)
    throw std::invalid_argument(what + ": rgb has " + std::to_string(im.rgb.size()) + " bytes, expected height*width*3 = " + std::to_string(want));
  if (quality < 1 || quality > 100) throw std::invalid_argument("JPEG quality (" + std::to_string(quality) + ") must be in 1..100");
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  // PIL's defaults: libjpeg's accurate integer DCT (TurboJPEG would pick the fast one), 4:2:0,
  // baseline Huffman tables (no optimisation, not progressive).
  const int rc = tjCompress2(h, im.rgb.data(), im.width, 0, im.height, TJPF_RGB, &buf, &size, TJSAMP_420, quality, TJFLAG_ACCURATEDCT);
  if (rc != 0) {
    const std::string err = tjGetErrorStr2(h);
    if (buf) tjFree(buf);
    throw std::runtime_error(what + ": TurboJPEG tjCompress2 failed: " + err);
  }
  std::vector<std::uint8_t> out(buf, buf + size);
  tjFree(buf);
  return out;
}

}  // namespace

std::vector<std::uint8_t> encode_jpeg(const Image& image, int quality, const std::string& what) {
  TjHandle h;
  return encode_with(h.h, image, quality, what);
}

// ===== request ==================================================================================

PyValue json_to_py(const nlohmann::json& j) {
  using T = nlohmann::json::value_t;
  switch (j.type()) {
    case T::null: return PyValue::none();
    case T::boolean: return PyValue::boolean(j.get<bool>());
    case T::number_integer: return PyValue::integer(j.get<std::int64_t>());
    case T::number_unsigned: {
      const auto u = j.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        throw std::invalid_argument("json_to_py: integer " + std::to_string(u) + " does not fit in int64");
      return PyValue::integer(static_cast<std::int64_t>(u));
    }
    case T::number_float: return PyValue::real(j.get<double>());
    case T::string: return PyValue::str(j.get<std::string>());
    case T::binary: {
      const auto& b = j.get_binary();
      return PyValue::bytes(std::vector<std::uint8_t>(b.begin(), b.end()));
    }
    case T::array: {
      PyValue::Items items;
      items.reserve(j.size());
      for (const auto& x : j) items.push_back(json_to_py(x));
      return PyValue::list(std::move(items));
    }
    case T::object: {
      PyValue::Entries en;
      for (auto it = j.begin(); it != j.end(); ++it) en.emplace_back(PyValue::str(it.key()), json_to_py(it.value()));
      return PyValue::dict(std::move(en));
    }
    case T::discarded: break;
  }
  throw std::invalid_argument("json_to_py: a discarded JSON value has no Python counterpart");
}

std::string reward_request_body(const std::vector<std::vector<std::uint8_t>>& jpegs, const std::vector<nlohmann::json>& metadata,
                                bool only_strict) {
  PyValue::Items images, metas;
  for (const auto& j : jpegs) images.push_back(PyValue::bytes(j));
  for (const auto& m : metadata) metas.push_back(json_to_py(m));
  PyValue body = PyValue::dict({{PyValue::str("images"), PyValue::list(std::move(images))},
                                {PyValue::str("meta_datas"), PyValue::list(std::move(metas))},
                                {PyValue::str("only_strict"), PyValue::boolean(only_strict)}});
  return pickle_dumps(body);
}

// ===== HTTP =====================================================================================

namespace {

constexpr std::size_t kMaxReplyBytes = std::size_t(64) << 20;

void curl_init_once() {
  static std::once_flag once;
  static CURLcode rc = CURLE_OK;
  std::call_once(once, [] { rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (rc != CURLE_OK) throw std::runtime_error(std::string("curl_global_init failed: ") + curl_easy_strerror(rc));
}

struct Reply {
  CURLcode curl = CURLE_OK;
  std::string curl_detail;  // CURLOPT_ERRORBUFFER
  long status = 0;
  std::string body;
  bool too_big = false;
};

std::size_t on_data(char* p, std::size_t size, std::size_t n, void* user) {
  auto* r = static_cast<Reply*>(user);
  const std::size_t bytes = size * n;
  if (r->body.size() + bytes > kMaxReplyBytes) {
    r->too_big = true;
    return 0;  // makes curl stop with CURLE_WRITE_ERROR
  }
  r->body.append(p, bytes);
  return bytes;
}

/// Printable one-line excerpt of a reply body: its first `n` characters, and its last line when
/// that lies beyond them (a Python traceback ends with the exception).
std::string excerpt(const std::string& body, std::size_t n = 200) {
  auto clean = [](std::string_view s) {
    std::string o;
    for (unsigned char c : s) o += (c == '\n') ? std::string(" | ") : (c < 0x20 || c == 0x7f) ? std::string(" ") : std::string(1, static_cast<char>(c));
    return o;
  };
  std::string_view b(body);
  while (!b.empty() && (b.back() == '\n' || b.back() == '\r' || b.back() == ' ')) b.remove_suffix(1);
  if (b.size() <= n) return "'" + clean(b) + "'";
  std::string out = "'" + clean(b.substr(0, n)) + "...'";
  const std::size_t nl = b.rfind('\n');
  if (nl != std::string_view::npos) {  // the cut hides the end: a traceback's exception line
    std::string_view last = b.substr(nl + 1);
    if (last.size() > n) last = last.substr(0, n);
    out += "; last line: '" + clean(last) + "'";
  }
  return out;
}

bool retryable(const Reply& r) {
  if (r.curl != CURLE_OK) {
    if (r.too_big) return false;
    switch (r.curl) {
      case CURLE_UNSUPPORTED_PROTOCOL:
      case CURLE_URL_MALFORMAT:
      case CURLE_NOT_BUILT_IN:
      case CURLE_OUT_OF_MEMORY:
      case CURLE_SSL_CACERT_BADFILE:
      case CURLE_PEER_FAILED_VERIFICATION:
        return false;
      default:
        return true;  // connection refused, timeouts, resets, partial bodies, DNS hiccups
    }
  }
  return r.status >= 500;
}

void get_reward_list(const PyValue& reply, const char* key, std::size_t n, std::vector<double>& out, bool required, bool& present,
                       const std::string& where) {
  const PyValue* v = reply.find(key);
  present = v != nullptr;
  if (!v) {
    if (required) throw RewardServerError(where + ": the reply has no \"" + key + "\"; keys: " + [&] {
      std::string k;
      for (const auto& e : reply.entries()) k += (k.empty() ? "" : ", ") + e.first.repr();
      return k.empty() ? std::string("none") : k;
    }());
    return;
  }
  if (v->kind() != PyValue::Kind::List && v->kind() != PyValue::Kind::Tuple)
    throw RewardServerError(where + ": reply \"" + key + "\" is a " + kind_name(v->kind()) + ", expected a list of numbers");
  const auto& it = v->items();
  if (it.size() != n)
    throw RewardServerError(where + ": reply \"" + key + "\" has " + std::to_string(it.size()) + " values, expected " + std::to_string(n) +
                            " (one per image of the batch)");
  for (std::size_t i = 0; i < it.size(); ++i) {
    if (!it[i].is_number())
      throw RewardServerError(where + ": reply \"" + key + "\"[" + std::to_string(i) + "] is a " + kind_name(it[i].kind()) + ", expected a number");
    const double d = it[i].as_double();
    if (!std::isfinite(d)) throw RewardServerError(where + ": reply \"" + key + "\"[" + std::to_string(i) + "] is " + num(d) + ", not a finite number");
    out.push_back(d);
  }
}

}  // namespace

struct RewardClient::Impl {
  RewardServerOptions o;
  CURL* curl = nullptr;
  curl_slist* headers = nullptr;
  TjHandle tj;

  explicit Impl(RewardServerOptions opt) : o(std::move(opt)) {
    curl_init_once();
    curl = curl_easy_init();
    if (!curl) throw std::runtime_error("curl_easy_init failed");
    // Raw body as the official client (requests.post(url, data=bytes)); no form encoding, and no
    // "Expect: 100-continue" round trip for large bodies.
    headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
    headers = curl_slist_append(headers, "Expect:");
  }
  ~Impl() {
    if (headers) curl_slist_free_all(headers);
    if (curl) curl_easy_cleanup(curl);
  }

  Reply post(const std::string& body) {
    Reply r;
    char err[CURL_ERROR_SIZE] = {0};
    curl_easy_reset(curl);
    const long ms = static_cast<long>(std::ceil(o.timeout_s * 1000.0));
    curl_easy_setopt(curl, CURLOPT_URL, o.url.c_str());
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, ms);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, ms);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r);
    r.curl = curl_easy_perform(curl);
    r.curl_detail = err;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, nullptr);
    return r;
  }

  std::string describe(const Reply& r) const {
    if (r.too_big) return "the reply is larger than " + std::to_string(kMaxReplyBytes >> 20) + " MiB";
    if (r.curl != CURLE_OK) {
      std::string s = "curl error " + std::to_string(static_cast<int>(r.curl)) + " (" + curl_easy_strerror(r.curl) + ")";
      if (!r.curl_detail.empty()) s += ": " + r.curl_detail;
      if (r.curl == CURLE_OPERATION_TIMEDOUT) s += " [timeout_s = " + num(o.timeout_s) + "]";
      if (r.status) s += " after HTTP status " + std::to_string(r.status);
      return s;
    }
    std::string s = "HTTP status " + std::to_string(r.status);
    s += r.body.empty() ? std::string(", empty reply") : ", reply begins " + excerpt(r.body);
    return s;
  }
};

RewardClient::RewardClient(RewardServerOptions options) {
  validate(options);
  impl_ = std::make_unique<Impl>(std::move(options));
}
RewardClient::~RewardClient() = default;
RewardClient::RewardClient(RewardClient&&) noexcept = default;
RewardClient& RewardClient::operator=(RewardClient&&) noexcept = default;
const RewardServerOptions& RewardClient::options() const { return impl_->o; }

RewardReply RewardClient::score(const std::vector<Image>& images, const std::vector<nlohmann::json>& metadata) {
  const auto t0 = std::chrono::steady_clock::now();
  Impl& m = *impl_;
  const RewardServerOptions& o = m.o;
  if (images.size() != metadata.size())
    throw std::invalid_argument("RewardClient::score: " + std::to_string(images.size()) + " images but " + std::to_string(metadata.size()) +
                                " metadata entries; one per image is needed");
  for (std::size_t i = 0; i < metadata.size(); ++i)
    if (!metadata[i].is_object())
      throw std::invalid_argument("RewardClient::score: metadata[" + std::to_string(i) + "] is a JSON " + metadata[i].type_name() +
                                  ", expected an object (GenEval metadata: tag, include, prompt, ...)");
  std::vector<std::vector<std::uint8_t>> jpegs;
  jpegs.reserve(images.size());
  for (std::size_t i = 0; i < images.size(); ++i)
    jpegs.push_back(encode_with(m.tj.h, images[i], o.jpeg_quality, "RewardClient::score: images[" + std::to_string(i) + "]"));

  RewardReply out;
  bool all_scores = true, all_strict = true;
  const std::size_t nb = (images.size() + static_cast<std::size_t>(o.batch) - 1) / static_cast<std::size_t>(o.batch);
  for (std::size_t b = 0; b < nb; ++b) {
    const std::size_t lo = b * static_cast<std::size_t>(o.batch);
    const std::size_t hi = std::min(images.size(), lo + static_cast<std::size_t>(o.batch));
    const std::string where = "reward server " + o.url + ": batch " + std::to_string(b) + " of " + std::to_string(nb) + " (images " +
                              std::to_string(lo) + ".." + std::to_string(hi - 1) + ")";
    const std::string body = reward_request_body(std::vector<std::vector<std::uint8_t>>(jpegs.begin() + static_cast<std::ptrdiff_t>(lo),
                                                                                          jpegs.begin() + static_cast<std::ptrdiff_t>(hi)),
                                                 std::vector<nlohmann::json>(metadata.begin() + static_cast<std::ptrdiff_t>(lo),
                                                                             metadata.begin() + static_cast<std::ptrdiff_t>(hi)),
                                                 o.only_strict);
    Reply r;
    int retries = 0;
    for (int attempt = 0;; ++attempt) {
      if (attempt > 0) {
        std::this_thread::sleep_for(std::chrono::duration<double>(o.backoff_s * std::ldexp(1.0, attempt - 1)));
        ++retries;
        ++out.retries;
      }
      ++out.requests;
      r = m.post(body);
      if (r.curl == CURLE_OK && r.status == 200) break;
      if (!retryable(r) || attempt >= o.max_retries)
        throw RewardServerError(where + " failed after " + std::to_string(retries) + " retr" + (retries == 1 ? "y" : "ies") +
                                (retryable(r) ? " (max_retries " + std::to_string(o.max_retries) + ")" : std::string(" (not retried)")) + ": " +
                                m.describe(r));
    }
    PyValue reply;
    try {
      UnpickleLimits lim;
      lim.max_bytes = kMaxReplyBytes;
      reply = unpickle(r.body, lim, "reply");
    } catch (const PickleError& e) {
      throw RewardServerError(where + ": HTTP 200 but the reply is not an acceptable pickle: " + e.what() + "; reply begins " +
                              excerpt(r.body, 60));
    }
    if (reply.kind() != PyValue::Kind::Dict)
      throw RewardServerError(where + ": the reply is a " + std::string(kind_name(reply.kind())) + ", expected a dict with \"rewards\"");
    const std::size_t n = hi - lo;
    bool present = false;
    get_reward_list(reply, "rewards", n, out.rewards, true, present, where);
    get_reward_list(reply, "scores", n, out.scores, false, present, where);
    all_scores = all_scores && present;
    get_reward_list(reply, "strict_rewards", n, out.strict_rewards, false, present, where);
    all_strict = all_strict && present;
  }
  if (!all_scores) out.scores.clear();
  if (!all_strict) out.strict_rewards.clear();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace janus
