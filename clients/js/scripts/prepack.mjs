// prepack.mjs — run by `npm pack` and `npm publish`: copies the repository's
// licence texts next to package.json, so that the tarball carries them while
// the repository keeps one copy of each (the copies are gitignored).

import fs from "node:fs";

for (const name of ["LICENSE-MIT", "LICENSE-APACHE"]) {
  fs.copyFileSync(new URL(`../../../${name}`, import.meta.url), new URL(`../${name}`, import.meta.url));
}
