// CUDA selection operators against the host twins: square, thin and non-square grids (shared
// memory up to N = 4096, global scratch above), several fraction settings, ties (quantised
// values), NaN and -0; maps and masks bitwise equal to the host's (the maps are computed with the
// host's operations in the host's order), counts exact. From embeddings / tokens the similarity
// is compared within tolerance and the masks against the host selection on the device's
// similarity (masks are a function of the similarity, which is a float sum in a different order).
#include "cuda_support.hpp"

namespace {

using namespace gcpo_cuda_test;

struct grid_case {
  std::int64_t H, W;
};

// Simulated: without 64 x 80 (N = 4097 of 17 x 241 still takes the global-memory path).
const std::vector<grid_case>& grids() {
  static const std::vector<grid_case> g = gpu_or_sim<std::vector<grid_case>>(
      {{1, 1}, {1, 7}, {7, 1}, {2, 2}, {4, 4}, {5, 7}, {8, 8}, {13, 17}, {24, 24}, {32, 32}, {17, 241}, {64, 80}, {3, 1031}},
      {{1, 1}, {1, 7}, {7, 1}, {2, 2}, {4, 4}, {5, 7}, {8, 8}, {13, 17}, {24, 24}, {32, 32}, {17, 241}, {3, 1031}});
  return g;
}

std::vector<gcpo::selection_options> option_sets(grid_case gc) {
  std::vector<gcpo::selection_options> v;
  gcpo::selection_options o;
  o.grid = {gc.H, gc.W};
  v.push_back(o);  // the official defaults
  gcpo::selection_options a = o;
  a.initial_frac = 0.0;
  a.gradient_frac = 0.3;
  a.similarity_frac = 0.05;
  a.window_start_frac = 0.0;
  a.window_frac = 1.0;
  v.push_back(a);
  gcpo::selection_options b = o;
  b.initial_frac = 0.5;
  b.gradient_frac = 0.5;
  b.similarity_frac = 0.5;  // more than remain: all the rest
  b.window_start_frac = 0.25;
  b.window_frac = 0.5;
  v.push_back(b);
  gcpo::selection_options c = o;
  c.gradient_frac = 0.0;
  c.similarity_frac = 1.0;
  v.push_back(c);
  return v;
}

enum class values { continuous, ties, special };

std::vector<float> random_map(rng& g, std::int64_t n, values kind, float lo, float hi) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) {
    x = g.uniform(lo, hi);
    if (kind == values::ties) x = std::round(x * 4.0f) / 4.0f;
    if (kind == values::special) {
      const double p = g.uniform();
      if (p < 0.05) x = std::numeric_limits<float>::quiet_NaN();
      else if (p < 0.10) x = -0.0f;
      else if (p < 0.15) x = 0.0f;
      else if (p < 0.3) x = std::round(x);
    }
  }
  return v;
}

const char* name_of(values k) { return k == values::continuous ? "continuous" : k == values::ties ? "ties" : "special"; }

/// The host selection with a given similarity (all outputs).
struct host_selection {
  std::vector<std::uint8_t> crit, init, grad, low;
  std::vector<std::int32_t> counts;
  std::vector<float> smooth, egrad, sim;
};

host_selection host_select(const std::vector<float>& entropy, const std::vector<float>& sim, std::int64_t R,
                           std::int64_t N, const gcpo::selection_options& opt) {
  host_selection h;
  h.crit.resize(R * N);
  h.init.resize(R * N);
  h.grad.resize(R * N);
  h.low.resize(R * N);
  h.counts.resize(R);
  h.smooth.resize(R * N);
  h.egrad.resize(R * N);
  h.sim.resize(R * N);
  gcpo::selection_inputs in;
  in.entropy = gcpo::make_view(entropy.data(), {R, N});
  in.similarity = gcpo::make_view(sim.data(), {R, N});
  gcpo::selection_outputs out;
  out.critical = gcpo::make_view(h.crit.data(), {R, N});
  out.counts = gcpo::make_view(h.counts.data(), {R});
  out.initial = gcpo::make_view(h.init.data(), {R, N});
  out.gradient = gcpo::make_view(h.grad.data(), {R, N});
  out.low_similarity = gcpo::make_view(h.low.data(), {R, N});
  out.smoothed_entropy = gcpo::make_view(h.smooth.data(), {R, N});
  out.entropy_gradient = gcpo::make_view(h.egrad.data(), {R, N});
  out.similarity = gcpo::make_view(h.sim.data(), {R, N});
  gcpo_test::host_workspace ws(gcpo::select_critical_tokens_workspace_bytes(R, N));
  GCPO_OK(gcpo::host::select_critical_tokens(in, out, opt, ws.get()));
  return h;
}

/// Device buffers for every output of select_critical_tokens.
struct device_selection {
  device_buffer<std::uint8_t> crit, init, grad, low;
  device_buffer<std::int32_t> counts;
  device_buffer<float> smooth, egrad, sim;
  device_selection(std::int64_t R, std::int64_t N)
      : crit(R * N), init(R * N), grad(R * N), low(R * N), counts(R), smooth(R * N), egrad(R * N), sim(R * N) {}
  gcpo::selection_outputs outputs(std::int64_t R, std::int64_t N, bool all) {
    gcpo::selection_outputs o;
    o.critical = gcpo::make_device_view(crit.get(), {R, N});
    o.counts = gcpo::make_device_view(counts.get(), {R});
    if (all) {
      o.initial = gcpo::make_device_view(init.get(), {R, N});
      o.gradient = gcpo::make_device_view(grad.get(), {R, N});
      o.low_similarity = gcpo::make_device_view(low.get(), {R, N});
      o.smoothed_entropy = gcpo::make_device_view(smooth.get(), {R, N});
      o.entropy_gradient = gcpo::make_device_view(egrad.get(), {R, N});
      o.similarity = gcpo::make_device_view(sim.get(), {R, N});
    }
    return o;
  }
  std::vector<output> outs(bool all) {
    if (!all) return {out(crit), out(counts)};
    return {out(crit), out(counts), out(init), out(grad), out(low), out(smooth), out(egrad), out(sim)};
  }
};

void check_against_host(const std::vector<std::vector<unsigned char>>& got, const host_selection& h, bool all) {
  check_equal(as<std::uint8_t>(got[0]), h.crit, "critical");
  check_equal(as<std::int32_t>(got[1]), h.counts, "counts");
  if (!all) return;
  check_equal(as<std::uint8_t>(got[2]), h.init, "initial");
  check_equal(as<std::uint8_t>(got[3]), h.grad, "gradient");
  check_equal(as<std::uint8_t>(got[4]), h.low, "low_similarity");
  // The maps are bitwise the host's (same operations, same order).
  check_same_floats(as<float>(got[5]), h.smooth,
              "smoothed_entropy bits");
  check_same_floats(as<float>(got[6]), h.egrad,
              "entropy_gradient bits");
}

}  // namespace

namespace {

void check_given_similarity(grid_case gc, const gcpo::selection_options& opt, values kind, std::int64_t R, bool all,
                            std::uint64_t seed) {
  const std::int64_t N = gc.H * gc.W;
  INFO("H=" << gc.H << " W=" << gc.W << " R=" << R << " values=" << name_of(kind) << " fracs=" << opt.initial_frac << "/"
            << opt.gradient_frac << "/" << opt.similarity_frac << "/" << opt.window_start_frac << "/" << opt.window_frac
            << " all outputs=" << all << " seed=" << seed);
  rng g(seed);
  const std::vector<float> entropy = random_map(g, R * N, kind, 0.0f, 5.0f);
  const std::vector<float> sim = random_map(g, R * N, kind, -1.0f, 1.0f);
  const host_selection h = host_select(entropy, sim, R, N, opt);
  device_buffer<float> d_ent(entropy), d_sim(sim);
  device_selection d(R, N);
  auto ws = device_workspace(gcpo::select_critical_tokens_workspace_bytes(R, N));
  gcpo::selection_outputs o = d.outputs(R, N, all);
  auto got = run_checked(
      [&](cudaStream_t s) {
        gcpo::selection_inputs in;
        in.entropy = gcpo::make_device_view(d_ent.get(), {R, N});
        in.similarity = gcpo::make_device_view(d_sim.get(), {R, N});
        return gcpo::cuda::select_critical_tokens(in, o, opt, ws.workspace(), s);
      },
      d.outs(all));
  check_against_host(got, h, all);
  if (all) check_same_floats(as<float>(got[7]), sim, "similarity copy");
}

}  // namespace

TEST_CASE("cuda select_critical_tokens: smoke (shared-memory and global maps, ties, NaN)", "[cuda][selection]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  for (const grid_case gc : {grid_case{5, 7}, grid_case{24, 24}, grid_case{17, 241}}) {
    gcpo::selection_options opt;
    opt.grid = {gc.H, gc.W};
    check_given_similarity(gc, opt, values::continuous, 2, true, 81);
    check_given_similarity(gc, option_sets(gc)[2], values::ties, 1, true, 82);
    check_given_similarity(gc, opt, values::special, 2, false, 83);
  }
}

TEST_CASE("cuda select_critical_tokens (given similarity): bitwise the host's", "[cuda][selection][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  std::uint64_t seed = 40;
  for (const grid_case& gc : grids()) {
    for (const gcpo::selection_options& opt : option_sets(gc)) {
      for (values kind : {values::continuous, values::ties, values::special}) {
        for (const std::int64_t R : {1, 3}) {
          if (simulated && R == 3 && gc.H * gc.W > 1024 && kind != values::special) continue;
          ++seed;
          check_given_similarity(gc, opt, kind, R, seed % 4 != 0, seed);  // sometimes only the required outputs
        }
      }
    }
  }
}

TEST_CASE("cuda select_critical_tokens from embeddings and from tokens + table", "[cuda][selection][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  std::uint64_t seed = 700;
  // Simulated: 4 x 4 and 8 x 8 (the similarity is P * N blocks per run, a 256-thread block of
  // CPU threads each; the larger grids and the global-map path of N > 4096 are covered with a
  // given similarity above).
  const std::vector<grid_case> gcs = gpu_or_sim<std::vector<grid_case>>({{4, 4}, {24, 24}, {17, 241}}, {{4, 4}, {8, 8}});
  for (const grid_case& gc : gcs) {
    for (const std::int64_t G : {2, 16}) {
      ++seed;
      const std::int64_t P = 2, R = P * G, N = gc.H * gc.W, D = 24, V = 97;
      INFO("H=" << gc.H << " W=" << gc.W << " G=" << G << " seed=" << seed);
      rng g(seed);
      gcpo::selection_options opt;
      opt.grid = {gc.H, gc.W};
      const std::vector<float> entropy = random_map(g, R * N, values::continuous, 0.0f, 5.0f);
      std::vector<gcpo::bfloat16> emb(R * N * D);
      for (auto& x : emb) x = gcpo::from_float<gcpo::bfloat16>(g.normal(0.3f, 1.0f));
      std::vector<float> table(V * D);
      for (auto& x : table) x = g.normal(0.2f, 1.0f);
      std::vector<std::int64_t> tokens(R * N);
      for (auto& t : tokens) t = g.integer(0, V - 1);
      device_buffer<float> d_ent(entropy), d_table(table);
      device_buffer<gcpo::bfloat16> d_emb(emb);
      device_buffer<std::int64_t> d_tok(tokens);
      auto ws = device_workspace(gcpo::select_critical_tokens_workspace_bytes(R, N));
      for (const bool from_tokens : {false, true}) {
        INFO("from_tokens=" << from_tokens);
        // Host similarity from the same source, for the values.
        std::vector<float> want_sim(R * N);
        gcpo::similarity_options sopt;
        sopt.group = G;
        if (from_tokens)
          GCPO_OK(gcpo::host::group_similarity_from_tokens(gcpo::make_view(tokens.data(), {R, N}),
                                                           gcpo::make_view(table.data(), {V, D}),
                                                           gcpo::make_view(want_sim.data(), {R, N}), sopt));
        else
          GCPO_OK(gcpo::host::group_similarity(gcpo::make_view(emb.data(), {R, N, D}),
                                               gcpo::make_view(want_sim.data(), {R, N}), sopt));
        for (const bool sim_out : {true, false}) {
          device_selection d(R, N);
          gcpo::selection_outputs o = d.outputs(R, N, true);
          if (!sim_out) o.similarity = {};
          std::vector<output> outs = d.outs(true);
          if (!sim_out) outs.pop_back();
          auto got = run_checked(
              [&](cudaStream_t s) {
                gcpo::selection_inputs in;
                in.entropy = gcpo::make_device_view(d_ent.get(), {R, N});
                in.similarity_opts.group = G;
                if (from_tokens) {
                  in.tokens = gcpo::make_device_view(d_tok.get(), {R, N});
                  in.embedding_table = gcpo::make_device_view(d_table.get(), {V, D});
                } else {
                  in.embeddings = gcpo::make_device_view(d_emb.get(), {R, N, D});
                }
                return gcpo::cuda::select_critical_tokens(in, o, opt, ws.workspace(), s);
              },
              outs);
          if (sim_out) {
            const std::vector<float> dsim = as<float>(got[7]);
            check_close(dsim, want_sim, value_atol, value_rtol, "similarity");
            check_against_host(got, host_select(entropy, dsim, R, N, opt), true);
          } else {
            // Same selection as with the similarity requested (same kernels, same order).
            device_selection d2(R, N);
            gcpo::selection_outputs o2 = d2.outputs(R, N, true);
            stream s;
            gcpo::selection_inputs in;
            in.entropy = gcpo::make_device_view(d_ent.get(), {R, N});
            in.similarity_opts.group = G;
            if (from_tokens) {
              in.tokens = gcpo::make_device_view(d_tok.get(), {R, N});
              in.embedding_table = gcpo::make_device_view(d_table.get(), {V, D});
            } else {
              in.embeddings = gcpo::make_device_view(d_emb.get(), {R, N, D});
            }
            GCPO_OK(gcpo::cuda::select_critical_tokens(in, o2, opt, ws.workspace(), s));
            GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
            check_against_host(got, host_select(entropy, d2.sim.download(), R, N, opt), true);
          }
        }
      }
    }
  }
}

TEST_CASE("cuda selection steps: initial, smoothing, gradient, top-k, low similarity, union", "[cuda][selection][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  std::uint64_t seed = 9000;
  for (const grid_case& gc : grids()) {
    for (const gcpo::selection_options& opt : option_sets(gc)) {
      for (values kind : {values::continuous, values::ties, values::special}) {
        ++seed;
        const std::int64_t R = 2, N = gc.H * gc.W;
        INFO("H=" << gc.H << " W=" << gc.W << " values=" << name_of(kind) << " seed=" << seed);
        rng g(seed);
        const std::vector<float> entropy = random_map(g, R * N, kind, 0.0f, 5.0f);
        const std::vector<float> sim = random_map(g, R * N, kind, -1.0f, 1.0f);
        std::vector<std::uint8_t> exclude(R * N);
        for (auto& x : exclude) x = g.chance(0.3) ? static_cast<std::uint8_t>(g.integer(1, 255)) : 0;
        auto hv = [&](auto& v) { return gcpo::make_view(v.data(), {R, N}); };
        auto dv = [&](auto& b) { return gcpo::make_device_view(b.get(), {R, N}); };

        // Host chain.
        std::vector<std::uint8_t> h_init(R * N), h_gmask(R * N), h_smask(R * N), h_smask_nx(R * N), h_crit(R * N);
        std::vector<float> h_smooth(R * N), h_grad(R * N);
        std::vector<std::int32_t> h_counts(R);
        GCPO_OK(gcpo::host::initial_mask(hv(h_init), opt));
        GCPO_OK(gcpo::host::smoothed_entropy(hv(entropy), hv(h_smooth), opt));
        GCPO_OK(gcpo::host::entropy_gradient(hv(h_smooth), hv(h_grad), opt));
        GCPO_OK(gcpo::host::gradient_topk(hv(h_grad), hv(h_gmask), opt));
        GCPO_OK(gcpo::host::low_similarity_mask(hv(sim), hv(exclude), hv(h_smask), opt));
        GCPO_OK(gcpo::host::low_similarity_mask(hv(sim), {}, hv(h_smask_nx), opt));
        GCPO_OK(gcpo::host::union_mask(hv(h_init), hv(h_gmask), hv(h_smask), hv(h_crit),
                                       gcpo::make_view(h_counts.data(), {R})));

        device_buffer<float> d_ent(entropy), d_sim(sim), d_smooth(R * N), d_grad(R * N);
        device_buffer<float> d_hgrad(h_grad);  // the host's gradient, for the top-k alone
        device_buffer<std::uint8_t> d_ex(exclude), d_init(R * N), d_gmask(R * N), d_smask(R * N), d_smask_nx(R * N),
            d_crit(R * N);
        device_buffer<std::uint8_t> d_hi(h_init), d_hg(h_gmask), d_hs(h_smask);
        device_buffer<std::int32_t> d_counts(R);

        auto r1 = run_checked([&](cudaStream_t s) { return gcpo::cuda::initial_mask(dv(d_init), opt, s); }, {out(d_init)});
        check_equal(as<std::uint8_t>(r1[0]), h_init, "initial_mask");
        auto r2 = run_checked([&](cudaStream_t s) { return gcpo::cuda::smoothed_entropy(dv(d_ent), dv(d_smooth), opt, s); },
                              {out(d_smooth)});
        check_same_floats(as<float>(r2[0]), h_smooth,
                    "smoothed_entropy bits");
        device_buffer<float> d_hsmooth(h_smooth);
        auto r3 = run_checked(
            [&](cudaStream_t s) { return gcpo::cuda::entropy_gradient(dv(d_hsmooth), dv(d_grad), opt, s); }, {out(d_grad)});
        check_same_floats(as<float>(r3[0]), h_grad,
                    "entropy_gradient bits");
        auto r4 = run_checked([&](cudaStream_t s) { return gcpo::cuda::gradient_topk(dv(d_hgrad), dv(d_gmask), opt, s); },
                              {out(d_gmask)});
        check_equal(as<std::uint8_t>(r4[0]), h_gmask, "gradient_topk");
        auto r5 = run_checked(
            [&](cudaStream_t s) { return gcpo::cuda::low_similarity_mask(dv(d_sim), dv(d_ex), dv(d_smask), opt, s); },
            {out(d_smask)});
        check_equal(as<std::uint8_t>(r5[0]), h_smask, "low_similarity_mask");
        auto r6 = run_checked(
            [&](cudaStream_t s) { return gcpo::cuda::low_similarity_mask(dv(d_sim), {}, dv(d_smask_nx), opt, s); },
            {out(d_smask_nx)});
        check_equal(as<std::uint8_t>(r6[0]), h_smask_nx, "low_similarity_mask (no exclude)");
        auto r7 = run_checked(
            [&](cudaStream_t s) {
              return gcpo::cuda::union_mask(dv(d_hi), dv(d_hg), dv(d_hs), dv(d_crit),
                                            gcpo::make_device_view(d_counts.get(), {R}), s);
            },
            {out(d_crit), out(d_counts)});
        check_equal(as<std::uint8_t>(r7[0]), h_crit, "union_mask");
        check_equal(as<std::int32_t>(r7[1]), h_counts, "union counts");
        // In place: critical is exactly `a`.
        stream s;
        GCPO_OK(gcpo::cuda::union_mask(dv(d_hi), dv(d_hg), {}, dv(d_hi), {}, s));
        GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
        std::vector<std::uint8_t> want_ip(R * N);
        for (std::int64_t i = 0; i < R * N; ++i) want_ip[i] = (h_init[i] | h_gmask[i]) ? 1 : 0;
        check_equal(d_hi.download(), want_ip, "union_mask in place");
      }
    }
  }
}

TEST_CASE("cuda selection: validation and workspace", "[cuda][selection]") {
  const std::int64_t R = 2, N = 16;
  std::vector<float> entropy(R * N), sim(R * N);
  std::vector<std::uint8_t> crit(R * N);
  gcpo::selection_inputs in;
  in.entropy = gcpo::make_device_view(entropy.data(), {R, N});
  in.similarity = gcpo::make_device_view(sim.data(), {R, N});
  gcpo::selection_outputs out;
  out.critical = gcpo::make_device_view(crit.data(), {R, N});
  gcpo::selection_options opt;
  gcpo::workspace small{nullptr, 0, gcpo::memory_space::device};
  CHECK(gcpo::cuda::select_critical_tokens(in, out, opt, small, nullptr).code() == gcpo::status_code::workspace_too_small);
  gcpo::selection_inputs hin = in;
  hin.entropy = gcpo::make_view(entropy.data(), {R, N});
  CHECK(gcpo::cuda::select_critical_tokens(hin, out, opt, small, nullptr).code() ==
        gcpo::status_code::wrong_memory_space);
}
