// Built against an installed gcpo: checks that find_package(gcpo) gives a usable target.
#include <gcpo/gcpo.hpp>

#include <cstdint>
#include <cstdio>

int main() {
  float rewards[4] = {1.0f, 0.0f, 1.0f, 0.0f};
  float adv[4] = {};
  gcpo::advantage_options opt;
  opt.group = 2;
  gcpo::status s = gcpo::host::group_advantages(gcpo::make_view(rewards, {4}), gcpo::make_view(adv, {4}), opt);
  if (!s.ok()) {
    std::fprintf(stderr, "group_advantages failed: %s\n", s.message());
    return 1;
  }
  // (1 - 0.5) / (sqrt(0.5) + 1e-4) = 0.70700...
  if (!(adv[0] > 0.7069f && adv[0] < 0.7072f && adv[1] < -0.7069f)) {
    std::fprintf(stderr, "unexpected advantages %g %g\n", adv[0], adv[1]);
    return 1;
  }
  std::printf("consumer ok: gcpo %d.%d.%d\n", GCPO_VERSION_MAJOR, GCPO_VERSION_MINOR, GCPO_VERSION_PATCH);
  return 0;
}
