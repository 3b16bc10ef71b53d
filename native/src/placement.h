// Placement of tiles inside arrays around stuck cells: alternating linear assignment problems over row
// slots and column slots (compiler/passes/remap-defects.ts describes the model; this is its solver).
#pragma once

#include <napi.h>

#include <cstdint>
#include <vector>

namespace dendra {

/** One tile on one array. Sites are the (row slot, column slot) pairs holding a stuck device. */
struct PlacementProblem {
  int32_t rowSlots = 0, colSlots = 0;
  bool flipRows = true;  // true: a row slot may be taken flipped; false: a column slot may
  int32_t k = 0, c = 0;  // logical inputs and outputs
  std::vector<double> weights;  // k*c: target G+ − G− in siemens (w · conductance per unit weight)
  std::vector<double> invK2;    // c: 1 / (conductance per unit weight)²
  std::vector<double> power;    // k: input power weights
  std::vector<int32_t> siteRow, siteCol;
  std::vector<double> siteLo, siteHi;  // reachable G+ − G− interval of each site, unflipped
  std::vector<int32_t> rowSlot, colSlot;  // initial slots, then the answer
  std::vector<uint8_t> rowFlip, colFlip;
  int32_t rounds = 2;
};

/** Linear assignment, n <= m: each row a distinct column, minimal total cost (Hungarian with potentials). */
std::vector<int32_t> assign(const std::vector<double>& cost, int32_t n, int32_t m);

/** Improves the slots of one problem in place. */
void solvePlacement(PlacementProblem& p);

/** JS: placeTiles(problems: NativePlacementProblem[], threads: number) → NativePlacement[]. */
Napi::Value placeTiles(const Napi::CallbackInfo& info);

}  // namespace dendra
