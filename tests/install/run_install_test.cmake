# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs a build tree into a scratch DESTDIR and builds and runs the consumer
# project in this directory against it (fmt's find-package-test, RE2's testinstall).
#
# cmake -DBUILD_DIR=<build> -DCONSUMER_SOURCE_DIR=<tests/install> -DWORK_DIR=<scratch>
#       -DGENERATOR=<gen> -DCXX_COMPILER=<c++> [-DCXX_FLAGS=..] [-DEXE_LINKER_FLAGS=..]
#       -P run_install_test.cmake
#
# DESTDIR, not just --prefix: whatever an install rule does, nothing lands outside
# WORK_DIR. And the tree is used from a place other than its configured prefix, so
# the CMake package and the .pc file must be relocatable to pass.
foreach(var BUILD_DIR CONSUMER_SOURCE_DIR WORK_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_install_test.cmake: -D${var}=... is required")
  endif()
endforeach()

set(prefix_in_destdir /opt/fdbroker)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
# Resolved, as the checks below compare resolved paths.
file(REAL_PATH ${WORK_DIR} WORK_DIR)
set(destdir ${WORK_DIR}/destdir)
set(prefix ${destdir}${prefix_in_destdir})

function(run step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install test: ${step} failed (${rc}):\n${out}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

run("install" ${CMAKE_COMMAND} -E env DESTDIR=${destdir}
    ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix_in_destdir})
message(STATUS "installed into ${prefix}")

# fdbrokerctl's bash completion, under the prefix where bash-completion looks (a
# file named after the command in a bash-completion/completions directory).
if(EXISTS ${prefix}/bin/fdbrokerctl)
  file(GLOB_RECURSE completions ${prefix}/*/bash-completion/completions/fdbrokerctl)
  list(LENGTH completions count)
  if(NOT count EQUAL 1)
    message(FATAL_ERROR "install test: expected fdbrokerctl's bash completion under ${prefix}, "
                        "found: ${completions}")
  endif()
endif()

# pkg-config on its own: the flags must point into the relocated tree.
find_program(PKG_CONFIG_EXECUTABLE NAMES pkgconf pkg-config REQUIRED)
file(GLOB_RECURSE pc_files ${prefix}/*/fdbroker.pc)
list(LENGTH pc_files pc_count)
if(NOT pc_count EQUAL 1)
  message(FATAL_ERROR "install test: expected one fdbroker.pc under ${prefix}, found: ${pc_files}")
endif()
get_filename_component(pc_dir ${pc_files} DIRECTORY)
run("pkg-config" ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pc_dir}
    ${PKG_CONFIG_EXECUTABLE} --cflags --libs fdbroker)
string(STRIP "${last_output}" pc_flags)
message(STATUS "pkg-config --cflags --libs fdbroker: ${pc_flags}")
# Paths may be spelt via ${pcfiledir}/..; compare them resolved.
separate_arguments(pc_args UNIX_COMMAND "${pc_flags}")
set(include_ok FALSE)
set(libdir_ok FALSE)
foreach(arg IN LISTS pc_args)
  if(arg MATCHES "^-I(.+)$")
    file(REAL_PATH "${CMAKE_MATCH_1}" dir)
    if(dir STREQUAL "${prefix}/include")
      set(include_ok TRUE)
    endif()
  elseif(arg MATCHES "^-L(.+)$")
    file(REAL_PATH "${CMAKE_MATCH_1}" dir)
    if(EXISTS "${dir}/libfdbroker.so" AND dir MATCHES "^${prefix}/")
      set(libdir_ok TRUE)
    endif()
  endif()
endforeach()
if(NOT include_ok OR NOT libdir_ok OR NOT pc_flags MATCHES "-lfdbroker")
  message(FATAL_ERROR "install test: pkg-config flags do not point into ${prefix}: ${pc_flags}")
endif()

# The consumer: find_package and pkg_check_modules, built and its tests run.
run("consumer build and test" ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pc_dir}
    ${CMAKE_CTEST_COMMAND} --build-and-test ${CONSUMER_SOURCE_DIR} ${WORK_DIR}/consumer
    --build-generator ${GENERATOR}
    --build-options -DCMAKE_PREFIX_PATH=${prefix} -DFDBROKER_EXPECTED_PREFIX=${prefix}
                    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
                    "-DCMAKE_EXE_LINKER_FLAGS=${EXE_LINKER_FLAGS}"
    --test-command ${CMAKE_CTEST_COMMAND} --output-on-failure)
message(STATUS "${last_output}")
