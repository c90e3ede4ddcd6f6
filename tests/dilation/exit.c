/* Exits with the code given as its argument (built with -static by tests/tests/dilation_go.rs:
 * a static program handed to the trap by the shim, whose exit status must reach the caller). */
#include <stdlib.h>

int main(int argc, char **argv) { return argc > 1 ? atoi(argv[1]) : 0; }
