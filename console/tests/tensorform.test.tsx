import { cleanup, fireEvent, render, screen } from "@testing-library/preact";
import { afterEach, describe, expect, it, vi } from "vitest";
import { TensorForm } from "../src/components/TensorForm";
import { buildRequest, curlFor, fromRawTensor, initialFields, pythonFor, toRawTensor } from "../src/tensors";

afterEach(cleanup);

const FEATURES = { name: "features", datatype: "FP32", shape: [-1, 4] };

describe("tensor logic", () => {
  it("starts from the metadata with -1 replaced by 1 and zeros", () => {
    const [f] = initialFields([FEATURES]);
    expect(f.shape).toBe("1,4");
    expect(buildRequest([f])).toEqual({ inputs: [{ name: "features", shape: [1, 4], datatype: "FP32", data: [0, 0, 0, 0] }] });
  });
  it("accepts nested arrays and comma-separated values", () => {
    const [f] = initialFields([FEATURES]);
    expect(buildRequest([{ ...f, shape: "2,4", values: "[[1,2,3,4],[5,6,7,8]]" }]).inputs[0].data).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(buildRequest([{ ...f, values: "5.1, 3.5, 1.4, 0.2" }]).inputs[0].data).toEqual([5.1, 3.5, 1.4, 0.2]);
  });
  it("names the field and the fault", () => {
    const [f] = initialFields([FEATURES]);
    expect(() => buildRequest([{ ...f, values: "[1,2,3]" }])).toThrow("features: shape [1, 4] needs 4 values, got 3");
    expect(() => buildRequest([{ ...f, shape: "1,5" }])).toThrow("features: dimension 1 must be 4, got 5");
    expect(() => buildRequest([{ ...f, shape: "4" }])).toThrow(/expects 2 dimensions/);
    expect(() => buildRequest([{ ...f, values: '[1,2,"x",4]' }])).toThrow('features: element 2 ("x") is not a FP32 value');
    expect(() => buildRequest([{ ...f, values: "[1,2," }])).toThrow(/JSON array/);
    const [i] = initialFields([{ name: "ids", datatype: "UINT8", shape: [2] }]);
    expect(() => buildRequest([{ ...i, values: "[1.5, 2]" }])).toThrow(/not a UINT8/);
    expect(() => buildRequest([{ ...i, values: "[-1, 2]" }])).toThrow(/unsigned/);
  });
  it("renders curl and Python without the key", () => {
    const body = buildRequest(initialFields([FEATURES]));
    const curl = curlFor("http://gw:8080", "iris clf", body);
    expect(curl).toContain("'http://gw:8080/v2/models/iris%20clf/infer'");
    expect(curl).toContain('x-api-key: $MODELSERVE_API_KEY');
    expect(curlFor("http://h", "m", { inputs: [{ name: "s", data: ["it's"] }] })).toContain(`it'\\''s`);
    expect(pythonFor("http://gw:8080", "m", body)).toContain('httpclient.InferInput("features", [1,4], "FP32")');
  });
});

describe("<TensorForm>", () => {
  it("renders one fieldset per input and submits the request", () => {
    const onSubmit = vi.fn();
    render(<TensorForm inputs={[FEATURES, { name: "mask", datatype: "BOOL", shape: [2] }]} onSubmit={onSubmit} />);
    expect(screen.getByText("features")).toBeTruthy();
    const values = document.querySelector<HTMLTextAreaElement>('textarea[name="features.values"]')!;
    fireEvent.input(values, { target: { value: "[5.1, 3.5, 1.4, 0.2]" } });
    const mask = document.querySelector<HTMLTextAreaElement>('textarea[name="mask.values"]')!;
    expect(mask.value).toBe("[false, false]");
    fireEvent.click(screen.getByRole("button", { name: "Send" }));
    expect(onSubmit).toHaveBeenCalledWith({
      inputs: [
        { name: "features", shape: [1, 4], datatype: "FP32", data: [5.1, 3.5, 1.4, 0.2] },
        { name: "mask", shape: [2], datatype: "BOOL", data: [false, false] },
      ],
    });
  });
  it("shows the error and does not submit bad input", () => {
    const onSubmit = vi.fn();
    render(<TensorForm inputs={[FEATURES]} onSubmit={onSubmit} />);
    const shape = document.querySelector<HTMLInputElement>('input[name="features.shape"]')!;
    fireEvent.input(shape, { target: { value: "2,4" } });
    fireEvent.click(screen.getByRole("button", { name: "Send" }));
    expect(onSubmit).not.toHaveBeenCalled();
    expect(screen.getByRole("alert").textContent).toBe("features: shape [2, 4] needs 8 values, got 4");
  });
});

describe("raw tensors", () => {
  it("round-trips every supported datatype through rawContents", () => {
    const cases: Array<[string, unknown[]]> = [
      ["FP32", [1.5, -2, 0.25]],
      ["FP64", [1e-9, 3]],
      ["INT8", [-128, 127]],
      ["INT64", [-5, 9007199254740991]],
      ["UINT16", [0, 65535]],
      ["BOOL", [true, false]],
      ["BYTES", ["hé", "", "x"]],
    ];
    for (const [datatype, data] of cases) {
      const raw = toRawTensor({ name: "t", datatype, shape: [data.length], data });
      expect(typeof raw.rawContents).toBe("string");
      expect(fromRawTensor(raw as never)).toEqual({ name: "t", datatype, shape: [data.length], data });
    }
  });
  it("lays FP32 out little-endian and frames BYTES with 4-byte lengths", () => {
    expect(toRawTensor({ name: "x", datatype: "FP32", shape: [1], data: [1] }).rawContents).toBe("AACAPw==");
    expect(toRawTensor({ name: "s", datatype: "BYTES", shape: [1], data: ["ab"] }).rawContents).toBe(btoa("\u0002\u0000\u0000\u0000ab"));
    expect(() => toRawTensor({ name: "h", datatype: "FP16", shape: [1], data: [1] })).toThrow("h: FP16 inputs are not supported by the console");
  });
});
