// gcpo/status.hpp - status codes returned by every gcpo operator.
//
// Library code never throws and never exits: every operator returns a `[[nodiscard]] status`.
// A status carries a code and a message that names the offending argument, for example
// "`tokens.shape[1]` (575) must equal `logits.shape[1]` (576)". The message lives inside the
// object (fixed-size buffer), so creating and copying a status never allocates.
#pragma once

#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstring>

namespace gcpo {

/// What went wrong. `success` is zero.
enum class status_code : int {
  success = 0,
  invalid_argument,        ///< a value, shape, stride or option is out of its documented range
  unsupported_dtype,       ///< the dtype of a view is not one this operator accepts
  wrong_memory_space,      ///< a host view was given to a CUDA operator or vice versa
  aliasing,                ///< an output overlaps an input or another output where that is not allowed
  workspace_too_small,     ///< the workspace is smaller than `*_workspace_bytes` asked for
  non_finite,              ///< a NaN or infinity was found by a check that looks for them
  cuda_error,              ///< a CUDA runtime call or kernel launch failed
  out_of_memory,           ///< a host twin could not allocate its scratch
};

/// A short, stable name of a status code ("invalid_argument").
inline const char* to_string(status_code c) noexcept {
  switch (c) {
    case status_code::success: return "success";
    case status_code::invalid_argument: return "invalid_argument";
    case status_code::unsupported_dtype: return "unsupported_dtype";
    case status_code::wrong_memory_space: return "wrong_memory_space";
    case status_code::aliasing: return "aliasing";
    case status_code::workspace_too_small: return "workspace_too_small";
    case status_code::non_finite: return "non_finite";
    case status_code::cuda_error: return "cuda_error";
    case status_code::out_of_memory: return "out_of_memory";
  }
  return "unknown";
}

/// The result of an operator: a code and a human-readable message (empty on success).
/// Trivially copyable: the code and a `max_message`-byte message (260 bytes with a 4-byte code).
class [[nodiscard]] status {
 public:
  static constexpr std::size_t max_message = 256;

  /// Success.
  constexpr status() noexcept : code_(status_code::success), message_{} {}

  /// A failure with a printf-style message. The message is truncated to `max_message - 1`
  /// characters (a truncated message ends with "...").
  static status error(status_code code, const char* fmt, ...) noexcept
#if defined(__GNUC__)
      __attribute__((format(printf, 2, 3)))
#endif
  {
    status s;
    s.code_ = code;
    std::va_list args;
    va_start(args, fmt);
    const int n = std::vsnprintf(s.message_, max_message, fmt, args);
    va_end(args);
    if (n >= static_cast<int>(max_message)) std::memcpy(s.message_ + max_message - 4, "...", 4);
    return s;
  }

  /// True on success.
  constexpr bool ok() const noexcept { return code_ == status_code::success; }
  constexpr explicit operator bool() const noexcept { return ok(); }
  /// The code.
  constexpr status_code code() const noexcept { return code_; }
  /// The message, "" on success.
  const char* message() const noexcept { return message_; }

 private:
  status_code code_;
  char message_[max_message];
};

/// Success, spelled out.
constexpr status ok() noexcept { return status(); }

}  // namespace gcpo

/// Returns from the enclosing function when `expr` (a gcpo::status) is not ok.
#define GCPO_TRY(expr)                          \
  do {                                          \
    ::gcpo::status gcpo_try_status_ = (expr);   \
    if (!gcpo_try_status_.ok()) return gcpo_try_status_; \
  } while (0)
