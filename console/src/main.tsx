import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { clearKey, getKey } from "./api";
import "./style.css";
import { Execution, Executions } from "./views/Executions";
import { ModelPage } from "./views/ModelPage";
import { Models } from "./views/Models";
import { Overview } from "./views/Overview";
import { PipelinePage, Pipelines } from "./views/Pipelines";
import { SignIn } from "./views/SignIn";
import { Tenants } from "./views/Tenants";

function useHash(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return hash;
}

function Route({ hash }: { hash: string }) {
  const [path, query] = hash.replace(/^#/, "").split("?", 2);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query ?? "");
  switch (parts[0]) {
    case "models":
      return parts[1] ? <ModelPage name={parts[1]} /> : <Models />;
    case "pipelines":
      return parts[1] ? <PipelinePage name={parts[1]} /> : <Pipelines />;
    case "executions":
      return parts[1] ? <Execution id={parts[1]} /> : <Executions pipeline={params.get("pipeline") ?? ""} />;
    case "tenants":
      return <Tenants />;
    default:
      return <Overview />;
  }
}

const NAV = [
  ["#/", "Overview"],
  ["#/models", "Models"],
  ["#/pipelines", "Pipelines"],
  ["#/executions", "Executions"],
  ["#/tenants", "Tenants & keys"],
];

function App() {
  const [signedIn, setSignedIn] = useState(Boolean(getKey()));
  const hash = useHash();
  if (!signedIn) return <SignIn onSignedIn={() => setSignedIn(true)} />;
  return (
    <>
      <nav aria-label="main">
        <strong>ModelServe</strong>
        {NAV.map(([href, label]) => (
          <a key={href} href={href} aria-current={(hash || "#/") === href || (href !== "#/" && hash.startsWith(href)) ? "page" : undefined}>
            {label}
          </a>
        ))}
        <a href="/docs" target="_blank" rel="noopener">API reference</a>
        <button type="button" onClick={() => { clearKey(); setSignedIn(false); }}>Sign out</button>
      </nav>
      <Route hash={hash} />
    </>
  );
}

render(<App />, document.getElementById("app")!);
