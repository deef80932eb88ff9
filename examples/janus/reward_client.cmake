# examples/janus/reward_client.cmake - the reward-server client (pickle, restricted unpickler,
# libcurl, JPEG through libjpeg-turbo), the loopback server and their tests: plain C++17, no
# libtorch (issue 13). Included from examples/janus/CMakeLists.txt before the trainer.
#
# Needs libcurl (Debian libcurl4-openssl-dev) and libjpeg-turbo's TurboJPEG API (Debian
# libturbojpeg0-dev); the tests also need /usr/bin/python3 with Flask (Debian python3-flask) for
# the loopback server. Without the libraries nothing here is built (a warning), unless
# JANUS_REQUIRE_IO is ON (a configuration error).

find_package(CURL QUIET)
set(_janus_turbojpeg "")
find_package(libjpeg-turbo CONFIG QUIET)
if(TARGET libjpeg-turbo::turbojpeg)
  set(_janus_turbojpeg libjpeg-turbo::turbojpeg)
else()
  find_package(PkgConfig QUIET)
  if(PkgConfig_FOUND)
    pkg_check_modules(JANUS_TURBOJPEG QUIET IMPORTED_TARGET libturbojpeg)
    if(JANUS_TURBOJPEG_FOUND)
      set(_janus_turbojpeg PkgConfig::JANUS_TURBOJPEG)
    endif()
  endif()
endif()

if(NOT CURL_FOUND OR NOT _janus_turbojpeg)
  set(_janus_rw_missing "")
  if(NOT CURL_FOUND)
    list(APPEND _janus_rw_missing "libcurl (Debian: libcurl4-openssl-dev)")
  endif()
  if(NOT _janus_turbojpeg)
    list(APPEND _janus_rw_missing "libjpeg-turbo's TurboJPEG (Debian: libturbojpeg0-dev)")
  endif()
  string(REPLACE ";" " and " _janus_rw_missing "${_janus_rw_missing}")
  if(JANUS_REQUIRE_IO)
    message(FATAL_ERROR "janus: the reward-server client needs ${_janus_rw_missing}; install them "
                        "(scripts/install-deps.sh --trainer) or configure with -DJANUS_REQUIRE_IO=OFF to build without it")
  else()
    message(WARNING "janus: ${_janus_rw_missing} not found: the reward-server client (janus_reward_client) and its tests are not built")
  endif()
else()
  # The pickle value type, writer and restricted unpickler: plain C++17, no dependency.
  add_library(janus_pickle STATIC pickle.cpp)
  target_include_directories(janus_pickle PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
  target_compile_features(janus_pickle PUBLIC cxx_std_17)
  target_link_libraries(janus_pickle PRIVATE gcpo_project_flags)

  add_library(janus_reward_client STATIC reward_client.cpp)
  target_include_directories(janus_reward_client PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
  target_compile_features(janus_reward_client PUBLIC cxx_std_17)
  target_link_libraries(janus_reward_client
    PUBLIC janus_pickle nlohmann_json::nlohmann_json
    PRIVATE CURL::libcurl ${_janus_turbojpeg} gcpo_project_flags)

  if(GCPO_BUILD_TESTS AND TARGET gcpo_catch_main)
    find_package(Catch2 2 QUIET)
    include(Catch OPTIONAL)  # without it, tests/CMakeLists.txt's fallback catch_discover_tests runs each binary as one test
    # Debian's interpreter, where python3-flask lives (a venv's python3 first on PATH may lack it).
    find_program(JANUS_SYSTEM_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
    find_program(JANUS_SYSTEM_PYTHON3 python3)
    if(NOT JANUS_SYSTEM_PYTHON3)
      message(FATAL_ERROR "janus: the reward-client tests need python3 (Debian: python3, python3-flask)")
    endif()
    set(_janus_rw_defs JANUS_PYTHON3="${JANUS_SYSTEM_PYTHON3}"
                       JANUS_LOOPBACK_SERVER="${CMAKE_CURRENT_SOURCE_DIR}/tools/loopback_reward_server.py")

    add_executable(test_pickle tests/test_pickle.cpp)
    target_link_libraries(test_pickle PRIVATE janus_pickle gcpo_catch_main gcpo_project_flags)
    target_compile_definitions(test_pickle PRIVATE ${_janus_rw_defs})
    catch_discover_tests(test_pickle TEST_PREFIX "rewards: " EXTRA_ARGS --warn NoTests PROPERTIES TIMEOUT 300)

    add_executable(test_reward_client tests/test_reward_client.cpp)
    target_link_libraries(test_reward_client PRIVATE janus_reward_client ${_janus_turbojpeg} gcpo_catch_main gcpo_project_flags)
    target_compile_definitions(test_reward_client PRIVATE ${_janus_rw_defs})
    catch_discover_tests(test_reward_client TEST_PREFIX "rewards: " EXTRA_ARGS --warn NoTests PROPERTIES TIMEOUT 300)

    # The loopback server needs Flask; say so plainly instead of failing every server test obscurely.
    add_test(NAME "rewards: python3-flask is importable by ${JANUS_SYSTEM_PYTHON3}"
             COMMAND ${JANUS_SYSTEM_PYTHON3} -c
             "import sys\ntry:\n    import flask\nexcept ImportError as e:\n    sys.exit('the loopback reward server needs Flask for ' + sys.executable + ': apt-get install python3-flask (scripts/install-deps.sh --trainer); ' + str(e))")
  endif()
endif()
