// The filler text of the browser benchmarks (www/bench.js, www/bench-wllama.js): the same
// sentences as src/conversation/bench.rs, so the native and browser benchmarks run the same chat.
export const SENTENCES = [
  'The harbour town wakes early, and the fishing boats leave before the sun is up.',
  'Our team is planning a two-week trip through the mountains next spring.',
  'The library keeps its oldest maps in a cold room behind the reading hall.',
  'A good sourdough needs patience: the starter, the dough and the oven all take time.',
  "The committee asked for a summary of last quarter's numbers by Friday.",
  'My grandmother grew tomatoes, beans and a row of sunflowers along the fence.',
  'The new train line cuts the trip between the two cities to under an hour.',
  'Astronomers measured the light of the distant star for three nights in a row.',
  "The museum's east wing reopens after a long renovation of its glass roof.",
  'Every Tuesday the market square fills with stalls selling cheese and honey.',
  'The engineers tested the bridge with trucks full of sand before it opened.',
  'She practised the violin piece slowly until every note was clean and even.',
];
