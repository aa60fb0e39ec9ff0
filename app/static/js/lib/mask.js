// Edit masks for image models. The painted strokes live on a canvas the size of the image;
// the mask sent upstream follows OpenAI's convention: fully transparent where the image may
// change, opaque elsewhere. Pure pixel work on RGBA arrays (tested in js_tests/mask.test.js).

// `painted` is the RGBA data of the stroke canvas (any colour; alpha > threshold = painted).
// Returns new RGBA data for the mask PNG: black and opaque, transparent where painted.
export function maskFromStrokes(painted, threshold = 16) {
  const out = new Uint8ClampedArray(painted.length);
  for (let i = 0; i < painted.length; i += 4) {
    const isPainted = painted[i + 3] > threshold;
    out[i] = 0;
    out[i + 1] = 0;
    out[i + 2] = 0;
    out[i + 3] = isPainted ? 0 : 255;
  }
  return out;
}

export function paintedFraction(painted, threshold = 16) {
  const pixels = painted.length / 4;
  if (!pixels) {
    return 0;
  }
  let count = 0;
  for (let i = 3; i < painted.length; i += 4) {
    if (painted[i] > threshold) {
      count += 1;
    }
  }
  return count / pixels;
}

// Pointer position on the displayed canvas -> pixel position on the image.
export function toImagePoint(clientX, clientY, rect, width, height) {
  const x = ((clientX - rect.left) / rect.width) * width;
  const y = ((clientY - rect.top) / rect.height) * height;
  return {
    x: Math.min(width, Math.max(0, x)),
    y: Math.min(height, Math.max(0, y)),
  };
}

// Brush size chosen on screen, in image pixels (a 40 px brush covers the same share of the
// picture whatever its resolution).
export function brushInImagePixels(screenSize, rect, width) {
  if (!rect.width) {
    return screenSize;
  }
  return Math.max(1, (screenSize * width) / rect.width);
}
